"""Through the real runner and PostgreSQL: telemetry in order, shuffled, or duplicated gives the same tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg
import pytest

from evaluation.pipeline import arrival_orders
from evaluation.stored import catch_up_fully, insert_telemetry
from microservices.positioning import Positioning
from microservices.runner import ServiceHost
from sitepulse.migrations import MigrationSource, upgrade
from sitepulse.sites import save_site

MIGRATIONS = MigrationSource("positioning", Path(Positioning.migrations), 100)
TABLES = {
    "track": "machine_id, ts, lat, lon, raw_lat, raw_lon, x_m, y_m, speed_kmh, heading_deg, state, zone, jump, carried",
    "zone_entries": "machine_id, zone, zone_type, entered_at",
    "zone_visits": "machine_id, zone, zone_type, entered_at, left_at, dwell_s",
    "speeding": "machine_id, zone, started_at, ended_at, duration_s, max_speed_kmh, limit_kmh",
}
ACTIVITY = """
    SELECT machine_id, minute, shift_date, shift, sum(distance_mm), sum(moving_ms), sum(idle_ms), sum(off_ms),
           sum(load_ms), sum(dump_ms), sum(road_ms), sum(parking_ms), sum(restricted_ms), sum(workshop_ms),
           sum(none_ms), sum(samples)
    FROM positioning.activity WHERE site_id = %s GROUP BY 1, 2, 3, 4 ORDER BY 1, 2"""


def enable(conn: psycopg.Connection, site_id: str) -> None:
    conn.execute("INSERT INTO service_enablement (site_id, service, enabled, enabled_at) "
                 "VALUES (%s, 'positioning', true, now())", (site_id,))


def results(conn: psycopg.Connection, site_id: str) -> dict[str, list[tuple]]:
    """Every table's rows (activity summed per machine and minute: it stores exact increments) and alerts."""
    out = {table: conn.execute(f"SELECT {cols} FROM positioning.{table} WHERE site_id = %s ORDER BY {cols}",
                               (site_id,)).fetchall() for table, cols in TABLES.items()}
    out["activity"] = conn.execute(ACTIVITY, (site_id,)).fetchall()
    out["alerts"] = conn.execute("SELECT key, level, at, machine_id, message FROM service_alerts "
                                 "WHERE site_id = %s ORDER BY key", (site_id,)).fetchall()
    return out


@pytest.mark.slow
def test_in_order_shuffled_and_duplicated_telemetry_give_identical_tables(fresh_database_url: str,
                                                                          simulated) -> None:
    telemetry = simulated.telemetry
    telemetry = telemetry[telemetry["ts"] < telemetry["ts"].min() + pd.Timedelta(minutes=12)]
    orders = arrival_orders(telemetry, window="2min", shuffled_parts=6, duplicated_parts=4, seeds=(3, 4, 5))
    host = ServiceHost(Positioning())
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        upgrade(conn, [MIGRATIONS])
        for site_id, chunks in orders.items():
            save_site(conn, site_id, simulated.site)
            enable(conn, site_id)
            for chunk in chunks:
                insert_telemetry(conn, chunk.assign(site_id=site_id))
                catch_up_fully(conn, host, [site_id])
        expected = results(conn, "in-order")
        for site_id in ("shuffled", "duplicated"):
            got = results(conn, site_id)
            for table in expected:
                assert got[table] == expected[table], (site_id, table)
        replays = dict(conn.execute("SELECT site_id, replays FROM service_checkpoints").fetchall())
    assert replays["in-order"] == 0 and replays["shuffled"] > 0 and replays["duplicated"] > 0
    assert len(expected["zone_visits"]) > 10 and len(expected["track"]) > 1000 and expected["activity"]
