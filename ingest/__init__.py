"""Ingest: the telemetry contract, MQTT consumption and the lossless batch writer."""

from pathlib import Path

from sitepulse.migrations import MigrationSource

MIGRATIONS = MigrationSource("ingest", Path(__file__).parent / "migrations", order=0)
