"""Decoders through the real pipeline: msg/s of one ingest worker per input family, beside native JSON.

Starts its own Mosquitto and PostgreSQL in temporary directories. For each family (native JSON, mapped JSON,
Sparkplug B) it queues a backlog of N QoS 1 messages carrying the same eight fields (position, speed, heading,
payload, fuel, hours, ignition) into the worker's persistent session, then times one SitePulse ingest worker,
configured with a decoders file routing both decoders' topics, from start until it has committed and acked all
N. Ratios are against native JSON in the same run; medians over --repeat runs (the machine is shared).

    .venv/bin/python benchmarks/decoders.py --messages 20000 --repeat 3
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# This file is named decoders.py: keep its folder off sys.path so "import decoders" finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import logging
import random
import statistics
import tempfile
import threading
import time

import orjson
import psycopg

from decoders.sparkplug.schema import Payload
from ingest.topics import telemetry_topic
from ingest.worker import IngestWorker
from simulators.outputs import publish_backlog
from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade
from sitepulse.settings import load_settings

FAMILIES = ("native-json", "mapped-json", "sparkplug-b")
MACHINES = 50
NODES = 5  # Sparkplug edge nodes, each with MACHINES / NODES devices
METRICS = [("GPS/Latitude", "lat", 10), ("GPS/Longitude", "lon", 10), ("GPS/Speed", "speed_kmh", 10),
           ("GPS/Heading", "heading_deg", 10), ("Body/Payload", "payload_kg", 10), ("Engine/Fuel", "fuel_used_l", 10),
           ("Engine/Hours", "engine_hours", 10), ("Engine/Running", "engine_on", 11)]
DECODERS_FILE = """
[[route]]
decoder = "mapped-json"
site = "bench"
topics = ["trackers/+/up"]
[route.options]
ts = "time"
ts_format = "epoch_ms"
[route.options.fields]
lat = "gps.lat"
lon = "gps.lon"
speed_kmh = { path = "gps.speed", unit = "m/s" }
heading_deg = "gps.course"
payload_kg = { path = "scale.load", unit = "t" }
fuel_used_l = "can.fuel"
engine_hours = "can.hours"
engine_on = "io.ignition"

[[route]]
decoder = "sparkplug-b"
site = "bench"
topics = ["spBv1.0/bench/#"]
[route.options.metrics]
""" + "".join(f'"{name}" = "{field}"\n' for name, field, _ in METRICS)


def _values(rng: random.Random, i: int) -> dict[str, float | bool]:
    return {"lat": -33.0 + rng.random() * 0.01, "lon": 151.0 + rng.random() * 0.01, "speed_kmh": rng.random() * 40,
            "heading_deg": rng.random() * 360, "payload_kg": rng.random() * 90000, "fuel_used_l": 1000 + i * 0.01,
            "engine_hours": 5000 + i * 0.001, "engine_on": True}


def messages(family: str, n: int, run: int) -> list[tuple[str, bytes]]:
    """n messages of one family, one sample each, spread over MACHINES machines (Sparkplug: births first)."""
    rng = random.Random(run)
    start_ms = int((time.time() - 3600) * 1000)
    out: list[tuple[str, bytes]] = []
    seqs = [0] * NODES
    if family == "sparkplug-b":
        for node in range(NODES):
            birth = Payload(timestamp=start_ms, seq=0)
            birth.metrics.add(name="bdSeq", datatype=4, long_value=0)
            out.append((f"spBv1.0/bench/NBIRTH/e{node}", birth.SerializeToString()))
        for m in range(MACHINES):
            node = m % NODES
            seqs[node] = (seqs[node] + 1) % 256
            birth = Payload(timestamp=start_ms, seq=seqs[node])
            for alias, (name, _, datatype) in enumerate(METRICS):
                birth.metrics.add(name=name, alias=alias, datatype=datatype)
            out.append((f"spBv1.0/bench/DBIRTH/e{node}/m{m:03d}", birth.SerializeToString()))
    for i in range(n):
        m = i % MACHINES
        ts_ms = start_ms + 1000 + i * 10
        values = _values(rng, i)
        if family == "native-json":
            out.append((telemetry_topic("bench", f"m{m:03d}"), orjson.dumps({"ts": ts_ms / 1000, **values})))
        elif family == "mapped-json":
            body = {"time": ts_ms, "gps": {"lat": values["lat"], "lon": values["lon"],
                                           "speed": values["speed_kmh"] / 3.6, "course": values["heading_deg"]},
                    "scale": {"load": values["payload_kg"] / 1000}, "io": {"ignition": 1},
                    "can": {"fuel": values["fuel_used_l"], "hours": values["engine_hours"]}}
            out.append((f"trackers/m{m:03d}/up", orjson.dumps(body)))
        else:
            node = m % NODES
            seqs[node] = (seqs[node] + 1) % 256
            data = Payload(timestamp=ts_ms, seq=seqs[node])
            for alias, (_, field, _) in enumerate(METRICS):
                if field == "engine_on":
                    data.metrics.add(alias=alias, timestamp=ts_ms, boolean_value=True)
                else:
                    data.metrics.add(alias=alias, timestamp=ts_ms, double_value=values[field])
            out.append((f"spBv1.0/bench/DDATA/e{node}/m{m:03d}", data.SerializeToString()))
    return out


def drain(settings, total: int) -> tuple[float, float]:
    """(msg/s, CPU microseconds per message) of one worker acking ``total`` queued messages.

    The worker runs in this process, which does nothing else meanwhile (the publisher has finished), so the
    process CPU time is the worker's: receiving, decoding, committing, acking. Wall-clock rates on a shared
    2-core machine swing with other sessions' load; CPU per message much less. ``total`` 0 only creates the
    session and its subscriptions.
    """
    stop = threading.Event()
    worker = IngestWorker(settings, stop)
    thread = threading.Thread(target=worker.run, name="ingest")
    started, cpu_started = time.perf_counter(), time.process_time()
    thread.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and thread.is_alive():
        if total == 0 and worker.consumer.version is not None:
            time.sleep(0.5)  # subscriptions granted
            break
        if total and worker.counters.acked_messages >= total:
            break
        time.sleep(0.005)
    ended, cpu = time.perf_counter(), time.process_time() - cpu_started
    stop.set()
    thread.join(60)
    if worker.counters.acked_messages < total:
        raise RuntimeError(f"worker acked {worker.counters.acked_messages} of {total}")
    if not total:
        return 0.0, 0.0
    return total / (ended - started), cpu / total * 1e6


def run_once(broker: EmbeddedBroker, pg: EmbeddedPostgres, folder: Path, family: str, n: int, run: int) -> dict:
    dbname = f"bench_{family.replace('-', '_')}_{run}"
    database_url = pg.fresh_database(dbname)
    with psycopg.connect(database_url, autocommit=True) as conn:
        upgrade(conn)
    settings = load_settings(database_url=database_url, mqtt_url=broker.url, decoders_file=folder / "decoders.toml",
                             ingest_client_id=f"bench-{family}-{run}")
    drain(settings, 0)  # the persistent session and its subscriptions, so the backlog queues for it
    backlog = messages(family, n, run)
    publish_backlog(backlog, broker.url, "bench-decoders-publisher")
    overall, cpu_us = drain(settings, len(backlog))
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
        rejected = conn.execute("SELECT count(*) FROM ingest_rejects").fetchone()[0]
    return {"msgs": overall, "cpu_us": cpu_us, "stored": stored, "rejected": rejected,
            "lost": n - stored - rejected}


def main(argv: list[str] | None = None) -> int:
    """Print msg/s per family, the ratio to native JSON in the same run, and samples lost."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per family per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians are printed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="sitepulse-bench-decoders-") as tmp:
        folder = Path(tmp)
        (folder / "decoders.toml").write_text(DECODERS_FILE)
        broker = EmbeddedBroker(folder / "mqtt")
        pg = EmbeddedPostgres(folder / "pg", fast_unsafe=True)
        broker.start()
        pg.start()
        try:
            runs = []
            for run in range(args.repeat):
                order = list(FAMILIES) if run % 2 == 0 else list(reversed(FAMILIES))  # no family always first
                runs.append({family: run_once(broker, pg, folder, family, args.messages, run) for family in order})
        finally:
            pg.destroy()
            broker.stop()
    print(f"{args.messages} single-sample messages per family per run, one worker, {args.repeat} run(s); medians;"
          " ratios against native JSON in the same run (CPU ratio: native's CPU per message / the decoder's)")
    print(f"{'decoder':<12} {'msg/s':>9} {'ratio':>6} {'CPU us/msg':>11} {'CPU ratio':>10} {'lost':>5}"
          "   runs (msg/s ratio, CPU ratio)")
    failed = False
    for family in FAMILIES:
        ratios = [r[family]["msgs"] / r["native-json"]["msgs"] for r in runs]
        cpu_ratios = [r["native-json"]["cpu_us"] / r[family]["cpu_us"] for r in runs]
        lost = sum(r[family]["lost"] for r in runs)
        failed |= lost != 0
        detail = "; ".join(f"{q:.2f} {c:.2f}" for q, c in zip(ratios, cpu_ratios, strict=True))
        print(f"{family:<12} {statistics.median(r[family]['msgs'] for r in runs):>9,.0f}"
              f" {statistics.median(ratios):>6.2f} {statistics.median(r[family]['cpu_us'] for r in runs):>11.1f}"
              f" {statistics.median(cpu_ratios):>10.2f} {lost:>5}   {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
