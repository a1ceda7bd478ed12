"""Versioned plain-SQL migrations, each package owning its own folder of them.

A folder holds ``NNNN_slug.sql`` files applied in version order. Where DDL must differ,
a version may instead ship ``NNNN_slug.postgres.sql`` and ``NNNN_slug.timescaledb.sql``;
the one matching the database's flavour runs. Applied versions are recorded in
``sitepulse_migrations`` with a checksum, so upgrading is idempotent and an edited,
already-applied file is reported instead of silently ignored.

Owners are found through the entry-point group ``sitepulse.migrations``: each entry
point names a MigrationSource or a callable returning a list of them.

Kept hand-written (about 140 lines) rather than Alembic or yoyo-migrations: Alembic brings SQLAlchemy and one
linear history per database, yoyo one folder list given up front; here each package and each installed plugin
brings its own folder, found through entry points, with per-flavour files (PostgreSQL or TimescaleDB) and
checksums of applied files. Not a speed question (an upgrade with nothing to apply is one query per owner).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import psycopg

from sitepulse.db import has_timescaledb
from sitepulse.errors import SitePulseError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sitepulse.migrations"
FILE_PATTERN = re.compile(
    r"^(?P<version>\d{4})_(?P<slug>[a-z0-9_]+)(?:\.(?P<flavor>postgres|timescaledb))?\.sql$"
)
LOCK_KEY = 7_355_608  # one advisory lock serialises concurrent upgraders

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS sitepulse_migrations (
    owner text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    flavor text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, version)
)"""


@dataclass(frozen=True)
class MigrationSource:
    """A package's migrations folder; ``order`` places owners (ingest before services)."""

    owner: str
    directory: Path
    order: int = 100


@dataclass(frozen=True)
class Migration:
    owner: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def database_flavor(conn: psycopg.Connection) -> str:
    """'timescaledb' when the extension is installed (or can be), else 'postgres'."""
    if has_timescaledb(conn):
        return "timescaledb"
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if available:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return "timescaledb"
    return "postgres"


def read_migrations(source: MigrationSource, flavor: str) -> list[Migration]:
    """The source's migrations for this flavour, in version order."""
    chosen: dict[int, Migration] = {}
    for path in sorted(Path(source.directory).glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise SitePulseError(f"{path}: migration file names look like 0001_create_things.sql")
        if match["flavor"] not in (None, flavor):
            continue
        version = int(match["version"])
        if version in chosen:
            raise SitePulseError(f"{path}: version {version} of {source.owner} appears twice")
        chosen[version] = Migration(source.owner, version, path.stem, path.read_text())
    return [chosen[v] for v in sorted(chosen)]


def discover_sources() -> list[MigrationSource]:
    """Every installed owner's migrations, in apply order."""
    sources: list[MigrationSource] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found = entry.load()
        items = found() if isinstance(found, Callable) and not isinstance(found, MigrationSource) else found
        sources.extend(items if isinstance(items, Iterable) else [items])
    return sorted(sources, key=lambda s: (s.order, s.owner))


def upgrade(conn: psycopg.Connection, sources: list[MigrationSource] | None = None) -> list[str]:
    """Apply every pending migration, each in its own transaction; returns what ran."""
    sources = discover_sources() if sources is None else sources
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        with conn.transaction():
            conn.execute(MIGRATIONS_TABLE)
            flavor = database_flavor(conn)
        done = {
            (owner, version): checksum
            for owner, version, checksum in conn.execute(
                "SELECT owner, version, checksum FROM sitepulse_migrations"
            )
        }
        for source in sources:
            for migration in read_migrations(source, flavor):
                key = (migration.owner, migration.version)
                if key in done:
                    if done[key] != migration.checksum:
                        log.warning(
                            "migration %s/%s changed after it was applied", migration.owner, migration.name
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO sitepulse_migrations (owner, version, name, flavor, checksum)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (migration.owner, migration.version, migration.name, flavor, migration.checksum),
                    )
                applied.append(f"{migration.owner}/{migration.name}")
                log.info("applied migration %s/%s", migration.owner, migration.name)
    finally:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied
