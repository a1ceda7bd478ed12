"""Site view latency as history grows: 200 machines at 1 Hz, p50/p95 of the view and of each card per size.

Builds telemetry (and the positioning/weight-loading tables the cards read, at their real
densities: a track point per machine every 5 s, activity per minute and per hour, a haul
cycle per hauler every 12 minutes) into an embedded PostgreSQL, newest first: the first size
is the most recent ``days[0]`` days up to now, each further size adds OLDER history, so the
live state is identical and only history grows. After each size it times, in process:

- ``view``: ``GET /api/v1/sites/bench/view`` through the whole app (TestClient);
- ``machines``: the last-value read behind the map and the live stream (one SSE tick);
- ``card:<service>``: each enabled service's card on its own.

    .venv/bin/python benchmarks/view.py                      # CI size: 0.02 and 0.05 days
    .venv/bin/python benchmarks/view.py --days 1 3 7         # 17.3 M, 51.8 M, 121 M telemetry rows

Prints p50/p95 per size and the ratio of p95 at the largest size to the smallest; exit status 1
when a view p95 is over 100 ms or the ratio is over 1.5.
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off sys.path: its ingest.py would shadow the ingest package the migrations import.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from ingest.partitions import Partitions
from microservices.discovery import discover_services
from registry.app import create_app
from registry.enablement import effective_settings, set_enablement
from registry.view import _reader, load_site_config, site_machines
from simulators.site import load_site
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade
from sitepulse.settings import load_settings
from sitepulse.sites import save_site

SITE = "bench"
MACHINES = 200
HAULERS = 160
CHUNK_S = 1800  # seconds of fleet data per INSERT (360,000 telemetry rows)
ADMIN = "bench-view-admin-token-0123456789abcdef012"
LAT0, LON0 = 59.30, 18.10

TELEMETRY = """
INSERT INTO telemetry (site_id, machine_id, ts, seq, received_at, lat, lon, speed_kmh, heading_deg, payload_kg,
                       fuel_used_l, engine_hours, engine_on)
SELECT %(site)s, 'M' || lpad(m::text, 3, '0'), t, s, t,
       %(lat)s + 0.004 * sin(s / 300.0 + m), %(lon)s + 0.007 * cos(s / 300.0 + m), 25 + 10 * sin(s / 60.0 + m),
       (s + m * 7) %% 360, greatest(0, 30000 * sin(s / 700.0 + m)), 1000 + m + s * 0.005, 5000 + m + s / 3600.0, true
FROM generate_series(0, %(machines)s - 1) m, generate_series(%(s0)s, %(s1)s - 1) s,
     LATERAL (SELECT %(epoch)s::timestamptz + s * interval '1 second' AS t) x"""
TRACK = """
INSERT INTO positioning.track (site_id, run_seq, machine_id, ts, lat, lon, raw_lat, raw_lon, x_m, y_m, speed_kmh,
                               heading_deg, state, zone, jump, carried)
SELECT %(site)s, 1, 'M' || lpad(m::text, 3, '0'), %(epoch)s::timestamptz + s * interval '1 second',
       %(lat)s + 0.004 * sin(s / 300.0 + m), %(lon)s + 0.007 * cos(s / 300.0 + m), NULL, NULL,
       400 * cos(s / 300.0 + m), 450 * sin(s / 300.0 + m), 25, 0, 'moving', NULL, false, false
FROM generate_series(0, %(machines)s - 1) m, generate_series(%(s0)s, %(s1)s - 1, 5) s"""
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
LAST = """
INSERT INTO machine_last (site_id, machine_id, ts, seq, lat, lon, speed_kmh, heading_deg, payload_kg, fuel_used_l,
                          engine_hours, engine_on, position_ts)
SELECT DISTINCT ON (machine_id) site_id, machine_id, ts, seq, lat, lon, speed_kmh, heading_deg, payload_kg,
       fuel_used_l, engine_hours, engine_on, ts
FROM telemetry WHERE site_id = %(site)s AND ts > %(since)s ORDER BY machine_id, ts DESC
ON CONFLICT (site_id, machine_id) DO UPDATE SET ts = EXCLUDED.ts, lat = EXCLUDED.lat, lon = EXCLUDED.lon"""


def prepare(url: str) -> dict[str, Any]:
    """Migrations, the demo quarry's zones as site 'bench', its 200 machines, both built-in services on."""
    services = {k: v for k, v in discover_services(None).items() if k in ("positioning", "weight-loading")}
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


def build(url: str, epoch: datetime, s0: int, s1: int, progress: Callable[[str], None]) -> int:
    """Fleet data for seconds [s0, s1) after ``epoch``, chunk by chunk; returns telemetry rows written."""
    with psycopg.connect(url, autocommit=True) as conn:
        Partitions(enabled=True).ensure(conn, epoch + timedelta(seconds=s0), epoch + timedelta(seconds=s1))
        conn.execute("SET synchronous_commit = off")
        rows = 0
        started = time.perf_counter()
        for a in range(s0, s1, CHUNK_S):
            b = min(s1, a + CHUNK_S)
            params = {"site": SITE, "epoch": epoch, "s0": a, "s1": b, "machines": MACHINES, "haulers": HAULERS,
                      "lat": LAT0, "lon": LON0}
            with conn.transaction():
                for statement in (TELEMETRY, TRACK, ACTIVITY, CYCLES, WL_ACTIVITY):
                    conn.execute(statement, params)
            rows += (b - a) * MACHINES
            rate = rows / (time.perf_counter() - started)
            progress(f"  {rows / 1e6:7.2f} M telemetry rows ({rate / 1e3:.0f} k rows/s)")
        conn.execute("ANALYZE")
    return rows


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    for _ in range(5):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure(url: str, client: TestClient, services: dict[str, Any], n: int) -> dict[str, list[float]]:
    """Milliseconds per call of the view, the machines read and each card."""
    headers = {"Authorization": f"Bearer {ADMIN}"}

    def view() -> None:
        response = client.get(f"/api/v1/sites/{SITE}/view?refresh=true", headers=headers)
        assert response.status_code == 200, response.text
        assert len(response.json()["machines"]) == MACHINES

    results = {"view": timed(view, n)}
    with psycopg.connect(url, autocommit=True) as conn:
        site = load_site_config(conn, SITE)
        assert site is not None
        results["machines"] = timed(lambda: site_machines(conn, SITE, site[0], datetime.now(UTC)), n)
        for name, service in services.items():
            settings = effective_settings(service, {})
            results[f"card:{name}"] = timed(lambda s=service, st=settings: s.card(SITE, _reader(conn), st), n)
    return results


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, nargs="+", default=[0.02, 0.05],
                        help="history sizes in days, ascending (cumulative)")
    parser.add_argument("--requests", type=int, default=200, help="timed calls per endpoint and size")
    parser.add_argument("--keep", type=Path, help="keep the database in this folder (reused when it exists)")
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
        built = end_s
        total = 0
        for days in sizes:
            start_s = end_s - int(days * 86400)
            print(f"building {days:g} days ...", flush=True)
            t0 = time.perf_counter()
            total += build(url, epoch, start_s, built, lambda line: print(line, end="\r", flush=True))
            built = start_s
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(LAST, {"site": SITE, "since": now - timedelta(minutes=5)})
            print(f"\n  built in {time.perf_counter() - t0:.0f} s; measuring", flush=True)
            with TestClient(app) as client:
                table.append((days, total, measure(url, client, services, args.requests)))
        print(f"\n{'days':>6} {'telemetry rows':>15} {'endpoint':<24} {'p50 ms':>8} {'p95 ms':>8}")
        for days, rows, results in table:
            for name, values in results.items():
                print(f"{days:>6g} {rows:>15,} {name:<24} {pct(values, 50):>8.1f} {pct(values, 95):>8.1f}")
        first, last = table[0][2], table[-1][2]
        failed = False
        print(f"\np95 ratio, {sizes[-1]:g} days vs {sizes[0]:g} days (target <= 1.5):")
        for name in first:
            ratio = pct(last[name], 95) / pct(first[name], 95)
            print(f"  {name:<24} {ratio:.2f}")
            failed |= name == "view" and ratio > 1.5
        worst = max(pct(results["view"], 95) for _, _, results in table)
        print(f"worst view p95: {worst:.1f} ms (target <= 100 ms)")
        return 1 if failed or worst > 100 else 0
    finally:
        server.stop()
        if args.keep is None:
            server.destroy()


if __name__ == "__main__":
    raise SystemExit(main())
