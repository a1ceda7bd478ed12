"""Storage of site configurations, shared by the API (writes) and the service runner (reads).

Every save is a numbered version (``site_versions``): uploads, zones drawn on the map and restores each add one,
with who made it and which zones changed, so an earlier layout can be read back and restored. ``sites`` keeps the
current version, the one services read at each batch: a new version applies from the next batch on, and results
already computed stay as they were (``sitepulse run-services --from`` recomputes them when asked).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from sitepulse.errors import Conflict, InvalidInput, NotFound, SitePulseError
from sitepulse.migrations import MigrationSource
from sitepulse.sitefile import SiteConfig, parse_site, slug

MIGRATIONS = MigrationSource("kernel", Path(__file__).parent / "schema", order=-10)
SITE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
VersionSource = Literal["upload", "drawing", "restore"]
ZONE_FACTS = ("type", "kind", "name", "speed_limit_kmh", "polygon")  # what "changed" compares


@dataclass(frozen=True)
class SiteVersion:
    """One stored version of a site file: its number, author, origin and the zones it added, changed, removed."""

    site_id: str
    version: int
    name: str
    created_at: datetime
    created_by: str
    source: str
    note: str | None
    changes: dict[str, list[str]]

    def summary(self) -> dict[str, Any]:
        return {"site_id": self.site_id, "version": self.version, "name": self.name, "created_at": self.created_at,
                "created_by": self.created_by, "source": self.source, "note": self.note, "changes": self.changes}


def check_site_id(site_id: str) -> str:
    """A site id as the MQTT contract allows it, or a clear error. Ids made only of dots are refused: ``.`` and
    ``..`` name directories in URL paths and export file names, never a site."""
    if not SITE_ID.match(site_id):
        raise SitePulseError(f"site id {site_id!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
    if not site_id.strip("."):
        raise InvalidInput(f"site id {site_id!r} is not allowed: it needs a letter, digit, '_' or '-'")
    return site_id


def zone_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, list[str]]:
    """Zone ids added, changed (kind, name, limit or outline) and removed between two stored configs."""
    old = {z["id"]: z for z in (before or {}).get("zones", [])}
    new = {z["id"]: z for z in after.get("zones", [])}
    changed = [i for i in new if i in old and any(old[i].get(k) != new[i].get(k) for k in ZONE_FACTS)]
    return {"added": [i for i in new if i not in old], "changed": changed, "removed": [i for i in old if i not in new]}


def save_site_version(conn: psycopg.Connection, site_id: str, site: SiteConfig, *, by: str = "",
                      source: VersionSource = "upload", note: str | None = None,
                      base_version: int | None = None) -> tuple[SiteVersion, bool]:
    """Store ``site`` as the site's next version and make it current; (the version, whether the site is new).

    ``base_version`` is the version the change was made on: when another version was saved since, the change is
    refused (409) instead of silently undoing the other one."""
    config = site.model_dump(mode="json")
    with conn.transaction():
        current = conn.execute("SELECT version, config FROM sites WHERE site_id = %s FOR UPDATE",
                               (check_site_id(site_id),)).fetchone()
        if base_version is not None and current is not None and current[0] != base_version:
            raise Conflict(f"site {site_id!r} is at version {current[0]} now, not {base_version}: someone saved "
                           "since you started; reload the map and draw again")
        number = 1 if current is None else current[0] + 1
        conn.execute(
            "INSERT INTO sites (site_id, name, config, version) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (site_id) DO UPDATE SET name = EXCLUDED.name, config = EXCLUDED.config, "
            "version = EXCLUDED.version, updated_at = now()",
            (site_id, site.name, Jsonb(config), number))
        changes = zone_changes(current[1] if current else None, config)
        row = conn.execute(
            "INSERT INTO site_versions (site_id, version, name, config, created_by, source, note, changes) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING site_id, version, name, created_at, created_by, source, note, changes",
            (site_id, number, site.name, Jsonb(config), by, source, note, Jsonb(changes))).fetchone()
    return SiteVersion(*row), current is None


def save_site(conn: psycopg.Connection, site_id: str, site: SiteConfig, *, by: str = "") -> bool:
    """Create or replace a site (a new version of it); True when it was new."""
    return save_site_version(conn, site_id, site, by=by)[1]


def site_versions(conn: psycopg.Connection, site_id: str) -> list[SiteVersion]:
    """Every stored version of a site, newest first."""
    return [SiteVersion(*row) for row in conn.execute(
        "SELECT site_id, version, name, created_at, created_by, source, note, changes FROM site_versions "
        "WHERE site_id = %s ORDER BY version DESC", (site_id,))]


def load_site_version(conn: psycopg.Connection, site_id: str, version: int) -> tuple[SiteVersion, dict[str, Any]]:
    """One stored version and its config (canonical JSON), or NotFound."""
    row = conn.execute(
        "SELECT site_id, version, name, created_at, created_by, source, note, changes, config FROM site_versions "
        "WHERE site_id = %s AND version = %s", (site_id, version)).fetchone()
    if row is None:
        raise NotFound(f"site {site_id!r} has no version {version}")
    return SiteVersion(*row[:8]), row[8]


def restore_site_version(conn: psycopg.Connection, site_id: str, version: int, *, by: str = "") -> SiteVersion:
    """Make an earlier version current again, as a new version (history is never rewritten)."""
    _, config = load_site_version(conn, site_id, version)
    site = SiteConfig.model_validate(config)
    return save_site_version(conn, site_id, site, by=by, source="restore", note=f"restored version {version}")[0]


def current_version(conn: psycopg.Connection, site_id: str) -> int | None:
    """The number of the site's current version (None: no such site)."""
    row = conn.execute("SELECT version FROM sites WHERE site_id = %s", (site_id,)).fetchone()
    return row[0] if row else None


def site_exists(conn: psycopg.Connection, site_id: str) -> bool:
    """Whether a site of that id is stored."""
    return conn.execute("SELECT 1 FROM sites WHERE site_id = %s", (site_id,)).fetchone() is not None


def load_site(conn: psycopg.Connection, site_id: str) -> SiteConfig | None:
    """The stored configuration of a site, or None when the site has no file loaded."""
    row = conn.execute("SELECT config FROM sites WHERE site_id = %s", (site_id,)).fetchone()
    return SiteConfig.model_validate(row[0]) if row else None


@dataclass(frozen=True)
class StoredSite:
    """A site as stored: its file as canonical JSON (not validated again), when it was last saved and its version."""

    site_id: str
    name: str
    config: dict[str, Any]
    updated_at: datetime
    version: int


_STORED = "SELECT site_id, name, config, updated_at, version FROM sites"


def stored_site(conn: psycopg.Connection, site_id: str) -> StoredSite | None:
    """One stored site (None: no such site), for readers that show or cache the file rather than parse it."""
    row = conn.execute(_STORED + " WHERE site_id = %s", (site_id,)).fetchone()
    return StoredSite(*row) if row else None


def stored_sites(conn: psycopg.Connection, sites: list[str] | None, after: str | None, limit: int) -> list[StoredSite]:
    """A page of stored sites by id: those in ``sites`` (None: all) with an id after ``after``."""
    rows = conn.execute(
        _STORED + " WHERE (%(all)s OR site_id = ANY(%(sites)s)) AND (%(after)s::text IS NULL OR site_id > %(after)s)"
        " ORDER BY site_id LIMIT %(limit)s",
        {"all": sites is None, "sites": sites or [], "after": after, "limit": limit})
    return [StoredSite(*row) for row in rows]


def site_ids(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT site_id FROM sites ORDER BY site_id")]


def redrawn_site(config: dict[str, Any], zones: list[dict[str, Any]]) -> SiteConfig:
    """The stored site with its zones replaced by those drawn on the map, read as an uploaded file would be (the
    same checks, the same repair of small self-crossings). A drawn zone without an id gets one from its name."""
    taken = {z["id"] for z in zones if z.get("id")}
    named = []
    for zone in zones:
        if not zone.get("id"):
            base = slug(str(zone.get("name") or "")) or "zone"
            candidate, n = base, 1
            while candidate in taken:
                n += 1
                candidate = f"{base[:60]}-{n}"
            taken.add(candidate)
            zone = {**zone, "id": candidate}
        named.append({k: v for k, v in zone.items() if v is not None})
    return parse_site(json.dumps({**config, "zones": named}).encode(), source="drawn zones")
def site_names(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every stored site as (site_id, name), by id ('' where the site file names none)."""
    return [(r[0], r[1] or "") for r in conn.execute("SELECT site_id, name FROM sites ORDER BY site_id")]


def declared_machines(conn: psycopg.Connection, sites: list[str]) -> dict[str, list[dict]]:
    """The machines each site file declares, as written (id, kind, model, ...), for these sites."""
    rows = conn.execute("SELECT site_id, config -> 'machines' FROM sites WHERE site_id = ANY(%s)", (sites,))
    return {site_id: machines or [] for site_id, machines in rows}


def zone_names(conn: psycopg.Connection, site_id: str) -> dict[str, str]:
    """Zone id -> the name the site manager drew (the id where the zone has none), read without parsing the file."""
    rows = conn.execute("SELECT z->>'id', coalesce(nullif(z->>'name', ''), z->>'id') FROM sites,"
                        " jsonb_array_elements(coalesce(config->'zones', '[]'::jsonb)) z WHERE site_id = %s",
                        (site_id,))
    return dict(rows.fetchall())
