"""Site view latency as history grows: 200 machines at 1 Hz, p50/p95 of the view and of each card per size.

Builds telemetry and the tables the three built-in services' cards read, at their real densities
(a track point per machine every 5 s, positioning activity per minute, weight-loading activity per
hour, a haul cycle per hauler every 12 minutes with a load and a dump service and a queue before the
load, an encounter per machine every 30 minutes (one in five critical, each critical one an alert),
road-segment use twice per machine and minute; positions, speed, heading and payload carry sensor noise of
about 1-2 m, 1 km/h, 4 degrees and 300 kg, so the telemetry compresses like a real fleet's, not like a
sine) into an embedded PostgreSQL (``benchmarks/storage.py`` runs it on TimescaleDB too), newest first: the first
size is the most recent ``days[0]`` days up to now, each further size adds OLDER history. Before each
measurement the live edge is topped up to the wall clock (telemetry keeps arriving while history is
added) and the database is vacuumed and analysed, so every size is measured with the same live state
(the last minutes, today) and only history differs. After each size it times, in process:

- ``view``: ``GET /api/v1/sites/bench/view`` through the whole app (TestClient);
- ``machines``: the last-value read behind the map and the live stream (one SSE tick);
- ``card:<service>``: each enabled service's card on its own.

    .venv/bin/python benchmarks/view.py                      # small: 0.02 and 0.05 days (CI runs 0.01 and 0.02)
    .venv/bin/python benchmarks/view.py --days 1 3 7         # 17.3 M, 51.8 M, 121 M telemetry rows

Prints p50/p95 per size and the ratio of p95 at the largest size to the smallest (``--json FILE`` writes
them too); exit status 1 when a view p95 is over 100 ms or the view's ratio is over 1.5 (unless
``--report-only``). Run timing on a quiet machine: the figures are only as steady as the cores are free.
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off sys.path: its ingest.py would shadow the ingest package the migrations import.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from fastapi.testclient import TestClient

from ingest.columns import RowBlock, snap_columns, to_micros
from ingest.contract import FLOAT_FIELDS, RESOLUTION
from ingest.fleet import site_fleet
from ingest.partitions import Partitions
from ingest.writer import DIRECT_COPY_SQL
from microservices.discovery import discover_services
from microservices.sdk import card_of
from registry.api.app import create_app
from registry.enablement import effective_settings, set_enablement
from registry.view import card_context, load_site_config, site_machines
from simulators.site import load_site
from sitepulse.db import has_timescaledb
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade
from sitepulse.settings import load_settings
from sitepulse.sites import save_site

SITE = "bench"
MACHINES = 200
HAULERS = 160
CHUNK_S = 1800  # seconds of fleet data per transaction (360,000 telemetry rows in one COPY)
ADMIN = "bench-view-admin-token-0123456789abcdef012"
LAT0, LON0 = 59.30, 18.10
GRID = np.array([RESOLUTION[name] for name, _, _ in FLOAT_FIELDS])


def telemetry_block(epoch: datetime, s0: int, s1: int) -> RowBlock:
    """The fleet's samples for seconds [s0, s1) after ``epoch``: machines drive loops at 1 Hz with sensor noise.

    Built with numpy and written with ingest's binary COPY (faster than generating it in SQL), on the grid ingest
    stores every number on (``ingest.contract.RESOLUTION``), so it compresses as ingested telemetry does.
    The noise is seeded by ``s0``, so a range builds the same rows whichever process builds it."""
    s = np.arange(s0, s1, dtype=np.int64)
    m = np.arange(MACHINES, dtype=np.int64)
    sec, mac = np.tile(s, MACHINES), np.repeat(m, len(s))
    noise = np.random.default_rng(s0).random((len(sec), 5)) - 0.5
    floats = np.column_stack([
        LAT0 + 0.004 * np.sin(sec / 300.0 + mac) + 2e-5 * noise[:, 0],
        LON0 + 0.007 * np.cos(sec / 300.0 + mac) + 4e-5 * noise[:, 1],
        25 + 10 * np.sin(sec / 60.0 + mac) + noise[:, 2],
        np.mod(sec + mac * 7 + 4 * (noise[:, 3] + 0.5), 360),
        np.maximum(0, 30000 * np.sin(sec / 700.0 + mac) + 300 * noise[:, 4]),
        1000 + mac + sec * 0.005,
        5000 + mac + sec / 3600.0,
    ])
    snap_columns(floats, GRID)
    ts = to_micros(epoch) + sec * 1_000_000
    return RowBlock([(SITE, f"M{i:03d}") for i in range(MACHINES)], mac, ts, sec, ts, floats,
                    np.ones(len(sec), np.int8), None)


TRACK = """
INSERT INTO positioning.track (site_id, run_seq, machine_id, ts, lat, lon, raw_lat, raw_lon, x_m, y_m, speed_kmh,
                               heading_deg, state, zone, jump, carried)
SELECT %(site)s, 1, 'M' || lpad(m::text, 3, '0'), %(epoch)s::timestamptz + s * interval '1 second',
       %(lat)s + 0.004 * sin(s / 300.0 + m), %(lon)s + 0.007 * cos(s / 300.0 + m), NULL, NULL,
       400 * cos(s / 300.0 + m), 450 * sin(s / 300.0 + m), 25, 0, CASE WHEN z IS NULL THEN 'moving' ELSE 'idle' END,
       z, false, false
FROM generate_series(0, %(machines)s - 1) m, generate_series(%(s0)s, %(s1)s - 1, 5) s,
     LATERAL (SELECT (ARRAY['load-a', 'crusher', 'load-b', 'spoil'])[(s / 5 + m) %% 12 + 1] AS z) x"""
ACTIVITY = """
INSERT INTO positioning.activity (site_id, run_seq, machine_id, minute, shift_date, shift, distance_mm, moving_ms,
    idle_ms, off_ms, load_ms, dump_ms, road_ms, parking_ms, restricted_ms, workshop_ms, none_ms, samples)
SELECT %(site)s, 1, 'M' || lpad(m::text, 3, '0'), %(epoch)s::timestamptz + s * interval '1 second',
       (%(epoch)s::timestamptz + s * interval '1 second')::date, 'day', 400000, 60000, 0, 0, 0, 0, 60000, 0, 0, 0, 0, 60
FROM generate_series(0, %(machines)s - 1) m, generate_series(%(s0)s, %(s1)s - 1, 60) s"""
CYCLES = """
INSERT INTO weight_loading.cycles (site_id, run_seq, machine_id, load_start, loaded_at, haul_start, dump_start,
    dumped_at, payload_kg, rated_payload_kg, payload_pct, band, passes, load_s, haul_s, dump_s, return_s,
    fuel_used_l, fuel_return_l, engine_hours)
SELECT %(site)s, 1, 'M' || lpad(m::text, 3, '0'), t, t + interval '3 min', t + interval '4 min',
       t + interval '8 min', t + interval '9 min', p, 28000, 100 * p / 28000,
       CASE WHEN p < 25200 THEN 'under' WHEN p <= 30800 THEN 'target' WHEN p <= 33600 THEN 'over_110'
            ELSE 'over_120' END, 4, 240, 240, 60, 180, 3, 2, 0.15
FROM generate_series(0, %(haulers)s - 1) m, generate_series(%(s0)s, %(s1)s - 1, 720) s,
     LATERAL (SELECT %(epoch)s::timestamptz + (s + m) * interval '1 second' AS t,
                     24000 + (((s / 720) * 7919 + m * 104729) %% 9000) AS p) x
WHERE (s + m) < %(s1)s"""
WL_ACTIVITY = """
INSERT INTO weight_loading.activity (site_id, run_seq, machine_id, hour, engine_hours, fuel_l, samples)
SELECT %(site)s, 1, 'M' || lpad(m::text, 3, '0'), %(epoch)s::timestamptz + s * interval '1 second', 1, 20, 3600
FROM generate_series(0, %(machines)s - 1) m, generate_series(%(s0)s, %(s1)s - 1, 3600) s"""
# traffic-awareness: an encounter per machine every 30 min (one in five critical, each critical one an alert,
# acknowledged after 5 min except in the last hour), a load and a dump service per hauler cycle (12 min) with a
# queue before the load, two road segments per machine and minute.
ENCOUNTERS = """
INSERT INTO traffic_awareness.encounters (site_id, run_seq, machine_a, machine_b, started_at, ended_at, at,
    min_distance_m, min_ttc_s, max_closing_kmh, level, lat, lon, zone)
SELECT %(site)s, 1, 'M' || lpad(m::text, 3, '0'), 'M' || lpad(((m + 1) %% %(machines)s)::text, 3, '0'),
       t - interval '6 s', t + interval '4 s', t, 4 + (s / 1800 + m) %% 12, 2.5, 30,
       CASE WHEN (s / 1800 + m) %% 5 = 0 THEN 'critical' ELSE 'warning' END, %(lat)s, %(lon)s, 'junction'
FROM generate_series(0, %(machines)s - 1) m, generate_series(%(s0)s, %(s1)s - 1, 1800) s,
     LATERAL (SELECT %(epoch)s::timestamptz + (s + m * 9) * interval '1 second' AS t) x
WHERE s + m * 9 < %(s1)s"""
ALERTS = """
INSERT INTO service_alerts (site_id, service, key, level, at, machine_id, message, data, created_at, published_at,
                            acknowledged_at, acknowledged_by)
SELECT site_id, 'traffic-awareness', 'encounter:' || machine_a || ':' || machine_b || ':' || extract(epoch FROM at),
       'critical', at, machine_a, 'close encounter', jsonb_build_object('machine_b', machine_b), at, at,
       CASE WHEN at < %(open_after)s THEN at + interval '5 min' END, CASE WHEN at < %(open_after)s THEN 'bench' END
FROM traffic_awareness.encounters
WHERE site_id = %(site)s AND level = 'critical' AND at >= %(epoch)s::timestamptz + %(s0)s * interval '1 second'
  AND at < %(epoch)s::timestamptz + %(s1)s * interval '1 second'"""
SERVICES = """
INSERT INTO traffic_awareness.services (site_id, run_seq, machine_id, zone, zone_type, arrived_at, served_from,
    served_to, left_at, service_s, shift_date, shift)
SELECT %(site)s, 1, 'M' || lpad(m::text, 3, '0'), z.zone, z.type, t - interval '90 s', t, t + interval '180 s',
       t + interval '200 s', 180, t::date, 'day'
FROM generate_series(0, %(haulers)s - 1) m, generate_series(%(s0)s, %(s1)s - 1, 720) s,
     (VALUES (0, 'load'), (480, 'dump')) k(off, type),
     LATERAL (SELECT %(epoch)s::timestamptz + (s + m + k.off) * interval '1 second' AS t) x,
     LATERAL (SELECT CASE WHEN k.type = 'load' THEN (ARRAY['load-a', 'load-b'])[m %% 2 + 1]
                          ELSE (ARRAY['crusher', 'spoil'])[m %% 2 + 1] END AS zone, k.type) z
WHERE s + m + k.off < %(s1)s"""
QUEUES = """
INSERT INTO traffic_awareness.queues (site_id, run_seq, machine_id, zone, zone_type, queued_from, queued_to, wait_s,
                                      shift_date, shift)
SELECT %(site)s, 1, 'M' || lpad(m::text, 3, '0'), (ARRAY['load-a', 'load-b'])[m %% 2 + 1], 'load',
       t - interval '90 s', t, 90, t::date, 'day'
FROM generate_series(0, %(haulers)s - 1) m, generate_series(%(s0)s, %(s1)s - 1, 720) s,
     LATERAL (SELECT %(epoch)s::timestamptz + (s + m) * interval '1 second' AS t) x
WHERE s + m < %(s1)s"""
SEGMENT_USE = """
INSERT INTO traffic_awareness.segment_use (site_id, run_seq, segment, minute, machine_id, samples, speed_sum_kmh,
                                           dwell_ms)
SELECT %(site)s, 1, 'road-load-a#' || ((s / 60 + m + k) %% 8), %(epoch)s::timestamptz + s * interval '1 second',
       'M' || lpad(m::text, 3, '0'), 30, 750, 30000
FROM generate_series(0, %(machines)s - 1) m, generate_series(%(s0)s, %(s1)s - 1, 60) s, generate_series(0, 1) k"""
LAST = """
INSERT INTO machine_last (site_id, machine_id, ts, seq, lat, lon, speed_kmh, heading_deg, payload_kg, fuel_used_l,
                          engine_hours, engine_on, position_ts)
SELECT DISTINCT ON (machine_id) site_id, machine_id, ts, seq, lat, lon, speed_kmh, heading_deg, payload_kg,
       fuel_used_l, engine_hours, engine_on, ts
FROM telemetry WHERE site_id = %(site)s AND ts > %(since)s ORDER BY machine_id, ts DESC
ON CONFLICT (site_id, machine_id) DO UPDATE SET ts = EXCLUDED.ts, lat = EXCLUDED.lat, lon = EXCLUDED.lon"""


def prepare(url: str) -> dict[str, Any]:
    """Migrations, the demo quarry's zones as site 'bench', its 200 machines, the three built-in services on."""
    services = discover_services(None)
    with psycopg.connect(url, autocommit=True) as conn:
        upgrade(conn)
        save_site(conn, SITE, load_site())
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO machines (site_id, machine_id, kind, model, rated_payload_kg)"
                            " VALUES (%s, %s, %s, %s, %s)",
                            [(SITE, f"M{m:03d}", "hauler" if m < HAULERS else "loader", "Volvo A30G", 28000)
                             for m in range(MACHINES)])
        for name in services:
            set_enablement(conn, services, SITE, name, enabled=True)
    return services


def build(url: str, epoch: datetime, s0: int, s1: int, open_after: datetime, progress: Callable[[str], None],
          analyze: bool = True) -> int:
    """Fleet data for seconds [s0, s1) after ``epoch``, chunk by chunk; returns telemetry rows written.

    Alerts raised before ``open_after`` are acknowledged (the open-alerts list holds the last hour's)."""
    with psycopg.connect(url, autocommit=True) as conn:
        Partitions(enabled=not has_timescaledb(conn)).ensure(conn, epoch + timedelta(seconds=s0),
                                                             epoch + timedelta(seconds=s1))
        conn.execute("SET synchronous_commit = off")
        rows = 0
        started = time.perf_counter()
        for a in range(s0, s1, CHUNK_S):
            b = min(s1, a + CHUNK_S)
            params = {"site": SITE, "epoch": epoch, "s0": a, "s1": b, "machines": MACHINES, "haulers": HAULERS,
                      "lat": LAT0, "lon": LON0, "open_after": open_after}
            with conn.transaction():
                with conn.cursor() as cur, cur.copy(DIRECT_COPY_SQL) as copy:
                    copy.write(telemetry_block(epoch, a, b).copy_bytes(jsonb_extra=True))
                for statement in (TRACK, ACTIVITY, CYCLES, WL_ACTIVITY, ENCOUNTERS, ALERTS, SERVICES, QUEUES,
                                  SEGMENT_USE):
                    conn.execute(statement, params)
            rows += (b - a) * MACHINES
            rate = rows / (time.perf_counter() - started)
            progress(f"  {rows / 1e6:7.2f} M telemetry rows ({rate / 1e3:.0f} k rows/s)")
        if analyze:
            conn.execute("ANALYZE")
    return rows


def timed(calls: dict[str, Callable[[], Any]], n: int) -> dict[str, list[float]]:
    """Milliseconds per call, the endpoints taken in turn (so a passing disturbance hits them all alike)."""
    for fn in calls.values():
        for _ in range(5):
            fn()
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - t0) * 1000)
    return out


def measure(url: str, client: TestClient, services: dict[str, Any], n: int) -> dict[str, list[float]]:
    """Milliseconds per call of the view, the machines read and each card."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    path = f"/api/v1/sites/{SITE}/view?refresh=true"
    body = client.get(path, headers=headers).json()
    assert len(body["machines"]) == MACHINES, body
    assert [c["status"] for c in body["cards"]] == ["ok"] * len(services), body["cards"]

    def view() -> None:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.text

    with psycopg.connect(url, autocommit=True) as conn:
        site = load_site_config(conn, SITE)
        assert site is not None
        calls: dict[str, Callable[[], Any]] = {
            "view": view, "machines": lambda: site_machines(conn, SITE, site[0], datetime.now(UTC))}
        # each card alone, with the context the page hands every card (site file and fleet, read once per page)
        context = card_context(conn, SITE, site[0], datetime.now(UTC), site_fleet(conn, SITE))
        for name, service in services.items():
            settings, own = effective_settings(service, {}), context.for_service(name)
            calls[f"card:{name}"] = lambda s=service, st=settings, c=own: card_of(s, c, st)
        return timed(calls, n)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def settle(url: str) -> None:
    """VACUUM (ANALYZE) what was just written, as autovacuum would soon: fresh statistics and visibility maps for the
    planner, and no autovacuum of millions of new rows competing with the timed requests on the same cores."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")  # write out what the build and the vacuum dirtied before the clock runs


def summary(table: list[tuple[float, int, dict[str, list[float]]]]) -> dict[str, Any]:
    """p50/p95 per size and endpoint, and the p95 ratio of the largest size to the smallest."""
    sizes = [{"days": days, "telemetry_rows": rows,
              "endpoints": {name: {"p50_ms": round(pct(v, 50), 2), "p95_ms": round(pct(v, 95), 2), "n": len(v)}
                            for name, v in results.items()}} for days, rows, results in table]
    first, last = sizes[0]["endpoints"], sizes[-1]["endpoints"]
    ratios = {name: round(last[name]["p95_ms"] / first[name]["p95_ms"], 2) for name in first}
    return {"sizes": sizes, "p95_ratio_last_to_first": ratios,
            "worst_view_p95_ms": max(size["endpoints"]["view"]["p95_ms"] for size in sizes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, nargs="+", default=[0.02, 0.05],
                        help="history sizes in days, ascending (cumulative)")
    parser.add_argument("--requests", type=int, default=200, help="timed calls per endpoint and size")
    parser.add_argument("--keep", type=Path, help="keep the database in this folder (reused when it exists)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file as JSON")
    parser.add_argument("--report-only", action="store_true", help="exit 0 even when a target is missed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sizes = sorted(args.days)
    root = args.keep or Path(tempfile.mkdtemp(prefix="sitepulse-bench-view-"))
    server = EmbeddedPostgres(root / "pgdata", fast_unsafe=True)
    server.start()
    try:
        url = server.fresh_database("bench_view")
        services = prepare(url)
        now = datetime.now(UTC).replace(microsecond=0)
        end_s = int(max(sizes) * 86400)
        epoch = now - timedelta(seconds=end_s)  # second 0 of the oldest size; data ends at now
        app = create_app(url, "mqtt://127.0.0.1:1", services=services, settings=load_settings(admin_token=ADMIN),
                         track_usage=False)
        table: list[tuple[float, int, dict[str, list[float]]]] = []
        built = live = end_s
        total = 0

        def progress(line: str) -> None:
            print(line, end="\r", flush=True)

        for days in sizes:
            start_s = end_s - int(days * 86400)
            print(f"building {days:g} days ...", flush=True)
            t0 = time.perf_counter()
            total += build(url, epoch, start_s, built, now - timedelta(hours=1), progress)
            built = start_s
            # Telemetry keeps arriving while older history is added: bring the live edge up to the wall clock, so
            # every size is measured with the same live state (last 10 minutes, today) and only history differs.
            caught_up = int((datetime.now(UTC) - epoch).total_seconds())
            if caught_up > live:
                total += build(url, epoch, live, caught_up, datetime.now(UTC) - timedelta(hours=1), progress)
                live = caught_up
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(LAST, {"site": SITE, "since": epoch + timedelta(seconds=live - 300)})
            print(f"\n  built in {time.perf_counter() - t0:.0f} s; vacuum and analyze", flush=True)
            settle(url)
            print("  measuring", flush=True)
            with TestClient(app) as client:
                table.append((days, total, measure(url, client, services, args.requests)))
        print(f"\n{'days':>6} {'telemetry rows':>15} {'endpoint':<24} {'p50 ms':>8} {'p95 ms':>8}")
        for days, rows, results in table:
            for name, values in results.items():
                print(f"{days:>6g} {rows:>15,} {name:<24} {pct(values, 50):>8.1f} {pct(values, 95):>8.1f}")
        figures = summary(table)
        print(f"\np95 ratio, {sizes[-1]:g} days vs {sizes[0]:g} days (target <= 1.5):")
        for name, ratio in figures["p95_ratio_last_to_first"].items():
            print(f"  {name:<24} {ratio:.2f}")
        print(f"worst view p95: {figures['worst_view_p95_ms']:.1f} ms (target <= 100 ms)")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        failed = figures["p95_ratio_last_to_first"]["view"] > 1.5 or figures["worst_view_p95_ms"] > 100
        return 1 if failed and not args.report_only else 0
    finally:
        server.stop()
        if args.keep is None:
            server.destroy()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
