"""Registry: service catalogue, per-site enablement, usage, evaluation and the HTTP API."""

from pathlib import Path

from sitepulse.migrations import MigrationSource

MIGRATIONS = MigrationSource("registry", Path(__file__).parent / "migrations", order=10)
