"""What positioning tells a fleet feed (registry/aemp.py) per machine, read from its own tables."""

from __future__ import annotations

from datetime import datetime

import psycopg


def distances_km(conn: psycopg.Connection, sites: list[str], machines: list[str]
                 ) -> list[tuple[str, str, float, datetime]]:
    """Per (site, machine): the distance SitePulse observed it drive (km), and the end of the last minute counted."""
    return conn.execute(
        "SELECT site_id, machine_id, sum(distance_mm) / 1e6, max(minute) + interval '1 minute'"
        " FROM positioning.activity WHERE site_id = ANY(%s) AND machine_id = ANY(%s) GROUP BY 1, 2",
        (sites, machines)).fetchall()
