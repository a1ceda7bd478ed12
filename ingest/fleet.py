"""The machines ingest knows and their newest values, read by site: the registry's fleet views (the AEMP feed)
read ``machines`` (births) and ``machine_last`` through these, never with their own SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

FLEET_COLUMNS = ("site_id", "machine_id", "kind", "model", "attributes", "updated_at", "ts", "lat", "lon",
                 "position_ts", "engine_hours", "fuel_used_l", "engine_on")
# a machine is known from its birth (machines), its samples (machine_last) or both
_FROM = " FROM machines m FULL JOIN machine_last l ON l.site_id = m.site_id AND l.machine_id = m.machine_id"
_WHERE = (" WHERE (%(all)s OR coalesce(m.site_id, l.site_id) = ANY(%(sites)s))"
          " AND (%(site)s::text IS NULL OR (coalesce(m.site_id, l.site_id), coalesce(m.machine_id, l.machine_id))"
          " = (%(site)s, %(machine)s))")


def _params(sites: list[str] | None, one: tuple[str, str] | None, **more: Any) -> dict[str, Any]:
    return {"all": sites is None, "sites": sites or [], "site": one[0] if one else None,
            "machine": one[1] if one else None, **more}


def fleet_page(conn: psycopg.Connection, sites: list[str] | None, limit: int, offset: int,
               one: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Machines of these sites (None: every site), or the one ``(site_id, machine_id)``, by site and machine id,
    with their newest values (``FLEET_COLUMNS``; None where never reported)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(m.site_id, l.site_id) AS site_id, coalesce(m.machine_id, l.machine_id) AS machine_id,"
            " m.kind, m.model, m.attributes, m.updated_at, l.ts, l.lat, l.lon, l.position_ts, l.engine_hours,"
            f" l.fuel_used_l, l.engine_on{_FROM}{_WHERE} ORDER BY 1, 2 LIMIT %(limit)s OFFSET %(offset)s",
            _params(sites, one, limit=limit, offset=offset))
        return [dict(zip(FLEET_COLUMNS, row, strict=True)) for row in cur.fetchall()]


def fleet_size(conn: psycopg.Connection, sites: list[str] | None) -> int:
    """How many machines ``fleet_page`` pages through for these sites (None: every site)."""
    return conn.execute(f"SELECT count(*){_FROM}{_WHERE}", _params(sites, None)).fetchone()[0]


def site_fleet(conn: psycopg.Connection, site_id: str) -> list[dict[str, Any]]:
    """Every machine of one site (born or reporting) with its newest position, motion, payload and engine values,
    by machine id: the live map's rows (None where never reported)."""
    with conn.cursor() as cur:
        cur.execute("""
            SELECT coalesce(l.machine_id, m.machine_id) AS machine_id, l.ts, l.lat, l.lon, l.speed_kmh, l.heading_deg,
                   l.payload_kg, l.engine_on, l.engine_hours, l.fuel_used_l, m.kind, m.model, m.rated_payload_kg,
                   m.status
            FROM (SELECT * FROM machine_last WHERE site_id = %(site)s) l
            FULL JOIN (SELECT * FROM machines WHERE site_id = %(site)s) m ON m.machine_id = l.machine_id
            ORDER BY 1""", {"site": site_id})
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def newest_sample_times(conn: psycopg.Connection, site_id: str) -> dict[str, datetime | None]:
    """Machine id -> the time of its newest sample at the site (from ``machine_last``)."""
    return dict(conn.execute("SELECT machine_id, ts FROM machine_last WHERE site_id = %s", (site_id,)).fetchall())


def births(conn: psycopg.Connection, site_id: str) -> list[tuple[str, str, str, float | None]]:
    """What the site's devices said of themselves in birth messages: (machine_id, kind, model, rated_payload_kg)."""
    return conn.execute("SELECT machine_id, kind, model, rated_payload_kg FROM machines WHERE site_id = %s"
                        " ORDER BY machine_id", (site_id,)).fetchall()
