"""Registry: the service catalogue, per-site enablement and lifecycle, usage and evaluation (the domain).

registry.api serves it over HTTP; nothing here imports registry.api.
"""

from pathlib import Path

from sitepulse.migrations import MigrationSource

# order 60: after the runner's tables (50), because 0002 adds a column to service_enablement
MIGRATIONS = MigrationSource("registry", Path(__file__).parent / "migrations", order=60)
