"""Runner scale-out: catch-up time of 1, 2 and 4 runner processes on one database, and one killed half-way.

    .venv/bin/python benchmarks/runner_scale.py                              # 40 sites x 25 machines x 1 h
    .venv/bin/python benchmarks/runner_scale.py --sites 8 --machines 10 --minutes 30 --runners 1,2,4

An embedded PostgreSQL and Mosquitto; ``--sites`` sites (the demo quarry's layout) of ``--machines`` haulers
each, ``--minutes`` of 1 Hz history stored BEFORE any runner starts (one transaction per site, as a backlog
after an outage), every installed service enabled on every site. The history is loaded once into a template
database; each run gets its own copy (``CREATE DATABASE ... TEMPLATE``) and starts N ``sitepulse
run-services`` processes, as N hosts would (no ``--workers`` parent). Once every runner is connected (and
idle: the services are switched off in the template), every service is switched on for every site and the
catch-up is timed until every (service, site) checkpoint has processed every row of its site. Per run it
prints the processes' start-up time, the catch-up time, the runners' CPU seconds (on cores other work shares,
the steadier figure: equal CPU for any N means the split costs nothing and wall time scales with the cores
the runners get) and the outputs' checksum: an md5 over every service table's rows (without ``run_seq`` and
columns filled by defaults such as ids) and the alerts, which must be identical whatever the number of runners.
An untimed warm-up run comes first (``--warm-up``). Then a run with two runners where one is SIGKILLed when
half the rows are processed: the time until its pairs were leased again, the checksum (the same: nothing
lost, nothing counted twice) and rows_processed == rows stored for every pair. Last line:
``runners: 2 / 1 = X.XX`` (catch-up time of 1 over catch-up time of 2; medians over ``--repeat``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, this folder comes first on sys.path and its ingest.py would shadow the ingest package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402

from ingest.partitions import Partitions  # noqa: E402
from ingest.writer import NOTIFY_CHANNEL  # noqa: E402
from microservices.discovery import discover_services  # noqa: E402
from microservices.pairs import sync_pairs  # noqa: E402
from simulators.site import load_site  # noqa: E402
from sitepulse.embedded.broker import EmbeddedBroker  # noqa: E402
from sitepulse.embedded.postgres import EmbeddedPostgres  # noqa: E402
from sitepulse.migrations import upgrade  # noqa: E402
from sitepulse.sites import save_site  # noqa: E402

TEMPLATE = "runner_scale_template"
START = pd.Timestamp("2026-03-02T06:00:00Z")
COLUMNS = ["site_id", "machine_id", "ts", "seq", "received_at", "lat", "lon", "speed_kmh", "heading_deg",
           "payload_kg", "fuel_used_l", "engine_hours", "engine_on"]


def site_history(site_id: str, machines: int, seconds: int, seed: int) -> pd.DataFrame:
    """``machines`` haulers driving at random over the demo quarry, 1 Hz, with load/dump payload cycles."""
    frame = load_site(None).frame
    rng = np.random.default_rng(seed)
    angle, radius = rng.uniform(0, 2 * np.pi, machines), rng.uniform(0, 800, machines)
    x, y, heading = radius * np.cos(angle), radius * np.sin(angle), rng.uniform(0, 360, machines)
    ids = np.array([f"H{i:03d}" for i in range(machines)], dtype=object)
    phase = rng.integers(0, 600, machines)
    parts = []
    for second in range(seconds):
        heading = (heading + rng.normal(0, 5, machines)) % 360
        x, y = x + 6.0 * np.sin(np.radians(heading)), y + 6.0 * np.cos(np.radians(heading))
        lon, lat = frame.to_lonlat(x, y)
        ts = START + pd.Timedelta(seconds=second)
        loaded = ((second + phase) % 600) < 300
        parts.append(pd.DataFrame({
            "site_id": site_id, "machine_id": ids, "ts": ts, "seq": second, "received_at": ts, "lat": lat,
            "lon": lon, "speed_kmh": 21.6, "heading_deg": heading, "payload_kg": np.where(loaded, 80_000.0, 0.0),
            "fuel_used_l": 0.01 * second, "engine_hours": 1.0 + second / 3600, "engine_on": True}))
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def build_template(pg: EmbeddedPostgres, sites: int, machines: int, seconds: int) -> dict[str, int]:
    """The migrated database with every site's history, every service enabled; returns rows per site."""
    url = pg.fresh_database(TEMPLATE)
    services = discover_services()
    counts = {}
    with psycopg.connect(url, autocommit=True) as conn:
        upgrade(conn)
        Partitions(enabled=True).ensure(conn, START.to_pydatetime(), (START + pd.Timedelta(seconds=seconds)))
        site = load_site(None)
        for index in range(sites):
            site_id = f"site{index:02d}"
            save_site(conn, site_id, site)
            for name in services:
                conn.execute("INSERT INTO service_enablement (site_id, service, enabled, enabled_at)"
                             " VALUES (%s, %s, false, now())", (site_id, name))  # switched on once runners are up
            rows = site_history(site_id, machines, seconds, seed=index)
            with conn.transaction(), conn.cursor().copy(
                    f"COPY telemetry ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows.astype(object).itertuples(index=False, name=None):
                    copy.write_row(row)
            counts[site_id] = len(rows)
        conn.execute("VACUUM ANALYZE telemetry")
    return counts


def copy_of_template(pg: EmbeddedPostgres, name: str) -> str:
    with psycopg.connect(pg.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return pg.url_for(name)


def start_runners(count: int, url: str, mqtt_url: str, log_dir: Path) -> list[subprocess.Popen]:
    env = {"SITEPULSE_LOG_LEVEL": "WARNING", **os.environ,  # SITEPULSE_TRACE_SERVICES=1 + LOG_LEVEL=INFO: each step
           "SITEPULSE_DATABASE_URL": url, "SITEPULSE_MQTT_URL": mqtt_url}
    return [subprocess.Popen([sys.executable, "-m", "sitepulse", "run-services"], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=(log_dir / f"runner-{i}.log").open("a"))
            for i in range(count)]


def progress(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
    return {(s, site): n for s, site, n in conn.execute(
        "SELECT service, site_id, rows_processed FROM service_checkpoints")}


def checksum(conn: psycopg.Connection) -> str:
    """md5 over every service table's rows and the alerts, without step numbers and default-filled columns."""
    parts = []
    for service in discover_services().values():
        for qualified in service.tables:
            schema, table = qualified.split(".", 1)
            columns = [c for c, default in conn.execute(
                "SELECT column_name, column_default FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name = %s ORDER BY ordinal_position", (schema, table))
                if c != "run_seq" and not (default and ("nextval" in default or "now()" in default))]
            listed = ", ".join(f'"{c}"' for c in columns)
            parts.append(conn.execute(
                f'SELECT count(*), coalesce(md5(string_agg(r::text, \'|\' ORDER BY r::text)), \'\')'
                f' FROM (SELECT {listed} FROM "{schema}"."{table}") r').fetchone())
    parts.append(conn.execute(
        "SELECT count(*), coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '') FROM (SELECT site_id,"
        " service, key, level, at, machine_id, message, data FROM service_alerts) r").fetchone())
    rows = sum(n for n, _ in parts)
    return f"{hashlib.md5('/'.join(h for _, h in parts).encode()).hexdigest()[:16]} ({rows} output rows)"


def runners_connected(conn: psycopg.Connection) -> int:
    """Runner processes connected (each names its connections after itself)."""
    return conn.execute("SELECT count(DISTINCT application_name) FROM pg_stat_activity"
                        " WHERE application_name LIKE 'sitepulse-runner %'").fetchone()[0]


@dataclass
class Run:
    runners: int
    startup_s: float
    drain_s: float
    checksum: str
    takeover_s: float | None = None
    exact: bool = True
    cpu_s: float = 0.0  # the runner processes' CPU seconds (user + system) during the catch-up
    db_s: float = 0.0  # the database server's CPU seconds during the catch-up
    busy_s: float = 0.0  # the whole machine's busy CPU seconds during the catch-up


def database_cpu_s(pg: EmbeddedPostgres) -> float:
    """CPU seconds of the PostgreSQL server: its processes alive now (the runners' backends among them) and those
    that have exited (autovacuum workers, ended connections: counted in the postmaster's children times)."""
    postmaster = psutil.Process(int((pg.pgdata / "postmaster.pid").read_text().split()[0]))
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for process in postmaster.children(recursive=True):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def machine_busy_s() -> float:
    """CPU seconds every process of the machine used (all cores, not idle): what the runners and the database
    leave to everything else shows against it."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def runner_cpu_s(process: subprocess.Popen) -> float:
    try:
        times = psutil.Process(process.pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def run(pg: EmbeddedPostgres, mqtt_url: str, counts: dict[str, int], runners: int, name: str, log_dir: Path,
        kill_half_way: bool = False, timeout_s: float = 3600) -> Run:
    url = copy_of_template(pg, name)
    with psycopg.connect(url, autocommit=True) as conn:
        services = [n for (n,) in conn.execute("SELECT DISTINCT service FROM service_enablement")]
        goal = {(s, site): n for s in services for site, n in counts.items()}
        total_rows = sum(goal.values())
        launched = time.monotonic()
        processes = start_runners(runners, url, mqtt_url, log_dir)
        while runners_connected(conn) < runners:
            if time.monotonic() - launched > 600 or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"{runners} runner(s) did not come up: see {log_dir}")
            time.sleep(0.2)
        startup_s = time.monotonic() - launched
        idle_cpu_s = sum(runner_cpu_s(p) for p in processes)  # start-up: not part of the catch-up
        idle_db_s = database_cpu_s(pg)
        idle_busy_s = machine_busy_s()
        started = time.monotonic()  # every runner is up and idle: switch the services on, as an admin would
        enabled_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        conn.execute("UPDATE service_enablement SET enabled = true")
        sync_pairs(conn, services)
        conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
        takeover = None
        killed_at = None
        victim_pairs: set[tuple[str, str]] = set()
        try:
            while True:
                done = progress(conn)
                processed = sum(min(done.get(k, 0), n) for k, n in goal.items())
                now = time.monotonic()
                if kill_half_way and killed_at is None and processed >= total_rows / 2:
                    victim = processes[0]
                    victim_pairs = {(s, site) for s, site in conn.execute(
                        "SELECT service, site_id FROM service_pairs WHERE lease_until > now()"
                        " AND split_part(runner, ':', 2) = %s", (str(victim.pid),))}
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    killed_at = now
                if killed_at is not None and takeover is None:
                    still = {(s, site) for s, site in conn.execute(
                        "SELECT service, site_id FROM service_pairs WHERE split_part(runner, ':', 2) = %s"
                        " AND lease_until > now()", (str(processes[0].pid),))}
                    if not still:
                        takeover = now - killed_at
                if all(done.get(k, 0) >= n for k, n in goal.items()):
                    break
                if now - started > timeout_s:
                    raise RuntimeError(f"{runners} runner(s) did not catch up in {timeout_s:.0f} s")
                for process in processes:
                    if process.poll() is not None and not (kill_half_way and process is processes[0]):
                        raise RuntimeError(f"a runner exited: see {log_dir}")
                time.sleep(0.2)
            finished = time.monotonic()
            cpu_s = sum(runner_cpu_s(p) for p in processes if p.poll() is None) - idle_cpu_s
            db_s = database_cpu_s(pg) - idle_db_s
            busy_s = machine_busy_s() - idle_busy_s
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        final = progress(conn)
        finish = conn.execute(
            "SELECT service, site_id, extract(epoch FROM updated_at - %s)::float8 FROM service_checkpoints"
            " ORDER BY 3", (enabled_at,)).fetchall()
        print(f"  pairs done at: median {statistics.median(f for *_, f in finish):.1f} s, last "
              + ", ".join(f"{sv}/{st} {f:.1f} s" for sv, st, f in finish[-3:]))
        exact = final == goal and not conn.execute("SELECT sum(replays) FROM service_checkpoints").fetchone()[0]
        result = Run(runners, startup_s, finished - started, checksum(conn), takeover, exact, cpu_s, db_s, busy_s)
        if kill_half_way:
            print(f"  killed runner held {len(victim_pairs)} pair(s)")
    with psycopg.connect(pg.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=40)
    parser.add_argument("--machines", type=int, default=25)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--runners", default="1,2,4", help="runner process counts to time, comma-separated")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-kill", action="store_true", help="skip the run with a runner SIGKILLed half-way")
    parser.add_argument("--warm-up", type=int, default=1,
                        help="untimed runs first (compiled kernels cached, the template's files read once)")
    args = parser.parse_args(argv)
    counts_of = [int(n) for n in args.runners.split(",")]
    with tempfile.TemporaryDirectory(prefix="runner-scale-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast_unsafe=True)
        broker = EmbeddedBroker(Path(tmp) / "mqtt")
        pg.start()
        broker.start()
        log_dir = Path(os.environ.get("RUNNER_SCALE_LOGS", tmp))  # the runners' stderr, kept if set
        try:
            began = time.monotonic()
            counts = build_template(pg, args.sites, args.machines, args.minutes * 60)
            print(f"history: {args.sites} sites x {args.machines} machines x {args.minutes} min = "
                  f"{sum(counts.values()):,} rows, {len(discover_services())} services "
                  f"(loaded in {time.monotonic() - began:.0f} s); {os.cpu_count()} cores")
            results: dict[int, list[Run]] = {n: [] for n in counts_of}
            sums = set()
            for warm in range(args.warm_up):
                outcome = run(pg, broker.url, counts, max(counts_of), f"warm_up_{warm}", log_dir)
                sums.add(outcome.checksum)
                print(f"warm-up, not counted: runners {max(counts_of)} catch-up {outcome.drain_s:7.1f} s  "
                      f"checksum {outcome.checksum}", flush=True)
            for repeat in range(args.repeat):
                order = counts_of if repeat % 2 == 0 else counts_of[::-1]  # ABBA against drift
                for n in order:
                    outcome = run(pg, broker.url, counts, n, f"run_{n}_{repeat}", log_dir)
                    results[n].append(outcome)
                    print(f"runners {n}: start-up {outcome.startup_s:5.1f} s  catch-up {outcome.drain_s:7.1f} s  "
                          f"{sum(counts.values()) / outcome.drain_s:9.0f} rows/s per service  "
                          f"CPU runners {outcome.cpu_s:5.1f} s database {outcome.db_s:5.1f} s "
                          f"machine {outcome.busy_s:5.1f} s  "
                          f"exact {outcome.exact}  checksum {outcome.checksum}", flush=True)
            sums |= {r.checksum for rs in results.values() for r in rs}
            if not args.no_kill:
                killed = run(pg, broker.url, counts, 2, "run_killed", log_dir, kill_half_way=True)
                sums.add(killed.checksum)
                print(f"runners 2, one SIGKILLed half-way: catch-up {killed.drain_s:7.1f} s  takeover "
                      f"{killed.takeover_s if killed.takeover_s is not None else float('nan'):.1f} s  "
                      f"exact {killed.exact}  checksum {killed.checksum}", flush=True)
            drain = {n: statistics.median(r.drain_s for r in rs) for n, rs in results.items()}
            print(f"checksums identical: {len(sums) == 1}")
            if 1 in drain and 2 in drain:
                print(f"runners: 2 / 1 = {drain[1] / drain[2]:.2f}")
            if 2 in drain and 4 in drain:
                print(f"runners: 4 / 2 = {drain[2] / drain[4]:.2f}")
        finally:
            broker.stop()
            pg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
