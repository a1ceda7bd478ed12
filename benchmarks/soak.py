"""Soak: 1,000 simulated machines at 1 Hz for N minutes through real processes, with periodic faults.

    .venv/bin/python benchmarks/soak.py --minutes 10          # by hand
    .venv/bin/python benchmarks/soak.py --minutes 0.75        # what CI runs (tests/reliability/test_soak.py)

Starts its own PostgreSQL and Mosquitto (temp dirs), ``python -m ingest --workers 2`` and
``python -m sitepulse run-services`` (positioning, weight-loading and traffic-awareness enabled for the
site), publishes one QoS 1 sample per machine per second, and every ``--fault-every`` seconds injects
the next fault of the cycle: SIGKILL an ingest worker, SIGKILL the runner (restarted), stop PostgreSQL
for 10 s (``--broker-restarts`` or ``--faults`` add a broker restart). Every 2 s it samples each
process's RSS and each service's lag (now minus ``service_checkpoints.data_until``). Reports
throughput, lag, RSS and the RSS slope of each process after a 60 s warm-up (MB/min, since its last
restart), also over the second half of that span alone and as the median RSS of consecutive tenths
(growth that levels off shows as a second-half slope near 0); exits 1 when samples were lost, a service had
not caught up 90 s after publishing stopped, or, in runs of 5 minutes or more, a slope exceeds
``--max-growth-mb-min``. ``--json PATH`` writes the figures. ``--services`` chooses the services
(default: all three built-in ones); ``--memtrace DIR`` makes every role report its heap
(``sitepulse/memtrace.py``).
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

import argparse
import json
import random
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime

import harness  # tests/reliability/harness.py
import orjson
import psutil
import psycopg

from sitepulse.embedded.broker import EmbeddedBroker

WARMUP_S = 60.0
SERVICES = ("positioning", "weight-loading", "traffic-awareness")
JUDGE_GROWTH_MIN = 5.0


def _machines(n: int) -> list[tuple[str, float, float]]:
    rng = random.Random(1)
    return [(f"S{i:04d}", 59.296 + rng.random() * 0.01, 18.085 + rng.random() * 0.02) for i in range(n)]


class Fleet:
    """n machines, one sample each per second, published QoS 1 with a bounded window."""

    def __init__(self, publisher: harness.FleetPublisher, n: int) -> None:
        self.publisher, self.machines = publisher, _machines(n)
        self.stop = threading.Event()
        self.published = 0
        self.thread = threading.Thread(target=self._run, name="fleet", daemon=True)

    def _run(self) -> None:
        client = self.publisher.client
        tick = 0
        start = time.monotonic()
        while not self.stop.is_set():
            now = time.time()
            for i, (machine, lat, lon) in enumerate(self.machines):
                sample = {"ts": round(now, 3), "seq": tick, "lat": lat + 1e-5 * (tick % 100),
                          "lon": lon + 1e-5 * (i % 7), "speed_kmh": float(tick % 30), "engine_on": True,
                          "payload_kg": float((tick * 100) % 30000), "fuel_used_l": 1000 + tick / 100,
                          "engine_hours": 100 + tick / 3600}
                while self.published - self.publisher.acked_count() >= 5000 and not self.stop.is_set():
                    time.sleep(0.005)
                client.publish(f"sites/{harness.SITE_ID}/machines/{machine}/telemetry", orjson.dumps(sample), qos=1)
                self.published += 1
            tick += 1
            time.sleep(max(0.0, start + tick - time.monotonic()))


class Acks:
    """Counts PUBACKs without a per-message map (the soak publishes hundreds of thousands)."""

    def __init__(self, publisher: harness.FleetPublisher) -> None:
        self.count = 0
        self.lock = threading.Lock()

        def on_publish(*_: object) -> None:
            with self.lock:
                self.count += 1

        publisher.client.on_publish = on_publish
        publisher.acked_count = lambda: self.count  # type: ignore[attr-defined]


def _rss(process: psutil.Process | None) -> float | None:
    try:
        return process.memory_info().rss / 2**20 if process else None
    except psutil.Error:
        return None


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope in MB per minute."""
    if len(points) < 5:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None


def run(minutes: float, machines: int, fault_every: float, broker_restarts: bool, max_growth: float,
        faults_wanted: list[str] | None = None, services: tuple[str, ...] = SERVICES,
        memtrace: Path | None = None) -> dict:
    server, pg_root = harness.start_postgres()
    workdir = Path(tempfile.mkdtemp(prefix="sitepulse-soak-"))
    broker = EmbeddedBroker(workdir / "mqtt")
    broker.start()
    url = harness.prepare_database(server, "soak", services)
    extra = {"SITEPULSE_MEMTRACE": str(memtrace.resolve())} if memtrace else {}
    env = harness.child_env(url, broker.url, workdir, services, **extra)
    ingest = harness.ingest_role(env, workdir, workers=2)
    runner = harness.runner_role(env, workdir)
    publisher = fleet = None
    samples: dict[str, list[tuple[float, float]]] = {}
    restarts: dict[str, float] = {}
    slots: dict[str, int] = {}  # ingest-worker-N -> pid of its current process (a restarted one takes its slot)
    lags: dict[str, list[float]] = {}
    faults: list[str] = []
    try:
        ingest.start()
        runner.start()
        if not harness.wait_for(lambda: (harness.try_scalar(url, "SELECT count(*) FROM ingest_worker_stats")
                                         or 0) >= 2, 60):
            raise SystemExit("ingest did not start:\n" + ingest.log_tail())
        time.sleep(1)
        publisher = harness.FleetPublisher(broker.host, broker.port, window=5000)
        Acks(publisher)
        fleet = Fleet(publisher, machines)
        started = time.monotonic()
        fleet.thread.start()
        cycle = faults_wanted or ["ingest-worker-sigkill", "runner-sigkill", "postgres-stop-10s"] + (
            ["broker-restart"] if broker_restarts else [])
        next_fault, index = started + fault_every, 0
        end = started + minutes * 60
        while time.monotonic() < end:
            now = time.monotonic() - started
            roles = {"ingest-supervisor": psutil.Process(ingest.pid) if ingest.alive() else None,
                     "runner": psutil.Process(runner.pid) if runner.alive() else None,
                     "mosquitto": psutil.Process(broker._process.pid) if broker.running else None}
            current = {p.pid: p for p in ingest.ingest_workers()}
            for pid in sorted(set(current) - set(slots.values())):
                label = next((k for k, v in sorted(slots.items()) if v not in current), f"ingest-worker-{len(slots)}")
                if label in slots:
                    restarts[label] = now
                slots[label] = pid
            roles.update({label: current.get(pid) for label, pid in slots.items()})
            for name, process in roles.items():
                rss = _rss(process)
                if rss is not None:
                    samples.setdefault(name, []).append((now, rss))
            try:
                rows = harness.query(url, "SELECT service, data_until FROM service_checkpoints")
            except psycopg.OperationalError:
                rows = []
            for service, until in rows:
                if until is not None:
                    lags.setdefault(service, []).append((datetime.now(UTC) - until).total_seconds())
            if time.monotonic() >= next_fault and time.monotonic() < end - 15:
                fault = cycle[index % len(cycle)]
                index += 1
                faults.append(f"{now:.0f}s {fault}")
                if fault == "ingest-worker-sigkill":
                    victims = ingest.ingest_workers()
                    if victims:
                        victims[0].kill()
                elif fault == "runner-sigkill":
                    runner.kill()
                    runner.start()
                    restarts["runner"] = now
                elif fault == "postgres-stop-10s":
                    server.stop("fast")
                    time.sleep(10)
                    server.start()
                else:
                    broker.stop()
                    time.sleep(2)
                    broker.start()
                    restarts["mosquitto"] = now
                next_fault = time.monotonic() + fault_every
            time.sleep(2)
        fleet.stop.set()
        fleet.thread.join(10)
        duration = time.monotonic() - started
        harness.wait_for(lambda: publisher.acked_count() >= fleet.published, 60)
        harness.wait_for(lambda: harness.try_scalar(url, "SELECT count(*) FROM telemetry") == fleet.published, 90)
        drained = time.monotonic() - started - duration
        caught_up = harness.wait_for(lambda: harness.services_caught_up(url, services=services), 90)
        stored = harness.try_scalar(url, "SELECT count(*) FROM telemetry")
        failing = {name: error for name, error in harness.query(
            url, "SELECT service, last_error FROM service_health WHERE status = 'failing'")}
        growth = {}
        for name, points in samples.items():
            since = restarts.get(name, 0.0)
            kept = [(t, r) for t, r in points if t >= since + WARMUP_S] or points[len(points) // 2:]
            late = kept[len(kept) // 2:]
            tenths = [kept[len(kept) * k // 10:len(kept) * (k + 1) // 10] for k in range(10)]
            growth[name] = {"rss_first_mb": round(points[0][1], 1), "rss_last_mb": round(points[-1][1], 1),
                            "rss_max_mb": round(max(r for _, r in points), 1),
                            "slope_mb_per_min": None if (s := _slope(kept)) is None else round(s, 2),
                            "slope_second_half_mb_per_min": None if (s := _slope(late)) is None else round(s, 2),
                            "rss_tenths_mb": [round(statistics.median(r for _, r in t), 1) for t in tenths if t],
                            "fitted_from_s": round(kept[0][0]), "fitted_to_s": round(kept[-1][0])}
        result = {
            "minutes": minutes, "machines": machines, "services": list(services), "published": fleet.published,
            "stored": stored,
            "lost": fleet.published - (stored or 0), "throughput_msg_s": round(fleet.published / duration, 1),
            "drain_after_stop_s": round(drained, 1), "faults": faults,
            "services_caught_up": caught_up, "services_failing": {k: (v or "")[:300] for k, v in failing.items()},
            "lag_s": {s: {"p50": round(statistics.median(v), 1), "max": round(max(v), 1)} for s, v in lags.items()},
            "memory": growth,
        }
        # a slope over less than a few minutes measures warm-up (imports, pandas caches), not a leak
        judged = minutes >= JUDGE_GROWTH_MIN
        flagged = [n for n, g in growth.items() if judged and (g["slope_mb_per_min"] or 0) > max_growth]
        result["growth_judged"] = judged
        result["growth_flagged"] = flagged
        result["ok"] = result["lost"] == 0 and not flagged and caught_up
        return result
    finally:
        if fleet is not None:
            fleet.stop.set()
        for role in (runner, ingest):
            role.stop()
        if publisher is not None:
            publisher.close()
        broker.stop()
        harness.stop_postgres(server, pg_root)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--fault-every", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--broker-restarts", action="store_true", help="include broker restarts in the cycle")
    parser.add_argument("--faults", help="comma-separated cycle, e.g. ingest-worker-sigkill,postgres-stop-10s"
                        " (a runner that is never killed shows its memory over the whole run)")
    parser.add_argument("--max-growth-mb-min", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--services", default=",".join(SERVICES), help="services enabled for the site")
    parser.add_argument("--memtrace", type=Path, help="directory for the roles' memory reports"
                        " (SITEPULSE_MEMTRACE, see sitepulse/memtrace.py)")
    args = parser.parse_args()
    wanted = [f.strip() for f in args.faults.split(",") if f.strip()] if args.faults else None
    known = {"ingest-worker-sigkill", "runner-sigkill", "postgres-stop-10s", "broker-restart"}
    if wanted and set(wanted) - known:
        parser.error(f"--faults: unknown {sorted(set(wanted) - known)}; known: {sorted(known)}")
    services = tuple(s.strip() for s in args.services.split(",") if s.strip())
    result = run(args.minutes, args.machines, args.fault_every, args.broker_restarts, args.max_growth_mb_min, wanted,
                 services, args.memtrace)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
