"""Storage of site configurations, shared by the API (writes) and the service runner (reads)."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from sitepulse.errors import InvalidInput, SitePulseError
from sitepulse.migrations import MigrationSource
from sitepulse.sitefile import SiteConfig

MIGRATIONS = MigrationSource("kernel", Path(__file__).parent / "schema", order=-10)
SITE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_site_id(site_id: str) -> str:
    """A site id as the MQTT contract allows it, or a clear error. Ids made only of dots are refused: ``.`` and
    ``..`` name directories in URL paths and export file names, never a site."""
    if not SITE_ID.match(site_id):
        raise SitePulseError(f"site id {site_id!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
    if not site_id.strip("."):
        raise InvalidInput(f"site id {site_id!r} is not allowed: it needs a letter, digit, '_' or '-'")
    return site_id


def save_site(conn: psycopg.Connection, site_id: str, site: SiteConfig) -> bool:
    """Create or replace a site; True when it was new."""
    row = conn.execute(
        "INSERT INTO sites (site_id, name, config) VALUES (%s, %s, %s) "
        "ON CONFLICT (site_id) DO UPDATE SET name = EXCLUDED.name, config = EXCLUDED.config, "
        "updated_at = now() RETURNING (xmax = 0)",
        (check_site_id(site_id), site.name, Jsonb(site.model_dump(mode="json"))),
    ).fetchone()
    return bool(row and row[0])


def site_exists(conn: psycopg.Connection, site_id: str) -> bool:
    """Whether a site of that id is stored."""
    return conn.execute("SELECT 1 FROM sites WHERE site_id = %s", (site_id,)).fetchone() is not None


def load_site(conn: psycopg.Connection, site_id: str) -> SiteConfig | None:
    """The stored configuration of a site, or None when the site has no file loaded."""
    row = conn.execute("SELECT config FROM sites WHERE site_id = %s", (site_id,)).fetchone()
    return SiteConfig.model_validate(row[0]) if row else None


def site_ids(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT site_id FROM sites ORDER BY site_id")]
