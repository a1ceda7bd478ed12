"""Decoders in front of ingest: what devices and OEM feeds actually send, turned into the normalised sample."""

from pathlib import Path

from sitepulse.migrations import MigrationSource

MIGRATIONS = MigrationSource("decoders", Path(__file__).parent / "migrations", order=5)
