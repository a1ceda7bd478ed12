"""What weight loading tells a fleet feed (registry/aemp.py) per machine, read from its own tables."""

from __future__ import annotations

from datetime import datetime

import psycopg


def payload_totals(conn: psycopg.Connection, sites: list[str], machines: list[str]
                   ) -> list[tuple[str, str, float, int, datetime]]:
    """Per (site, machine): payload moved (kg), loads counted, and the last dump, over every stored cycle."""
    return conn.execute(
        "SELECT site_id, machine_id, sum(payload_kg), count(*), max(dumped_at) FROM weight_loading.cycles"
        " WHERE site_id = ANY(%s) AND machine_id = ANY(%s) GROUP BY 1, 2", (sites, machines)).fetchall()


def fuel_since(conn: psycopg.Connection, sites: list[str], machines: list[str], since: datetime
               ) -> list[tuple[str, str, float, datetime]]:
    """Per (site, machine): litres of fuel used from ``since`` (whole hours), and the end of the last hour counted."""
    return conn.execute(
        "SELECT site_id, machine_id, sum(fuel_l), max(hour) + interval '1 hour' FROM weight_loading.activity"
        " WHERE site_id = ANY(%s) AND machine_id = ANY(%s) AND hour >= %s GROUP BY 1, 2",
        (sites, machines, since)).fetchall()
