"""Ingest throughput against a bare paho drain, on a real Mosquitto and a real PostgreSQL.

Starts its own broker and PostgreSQL in temporary directories, queues a backlog of N QoS 1
telemetry messages into two persistent sessions (one plain subscription for the baseline, one
plain one for the SitePulse worker, as it subscribes), then drains it (a) with a bare paho subscriber
that only JSON-parses and (b) with one SitePulse ingest worker writing to PostgreSQL.

    .venv/bin/python benchmarks/ingest.py                      # single-sample and 10-sample runs
    .venv/bin/python benchmarks/ingest.py --messages 60000 --batch-size 10 --repeat 3
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# This file is named ingest.py: keep its folder off sys.path so "import ingest" finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import logging
import random
import statistics
import tempfile
import threading
import time

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.topics import TELEMETRY_FILTER, telemetry_topic
from ingest.worker import IngestWorker
from simulators.outputs import publish_backlog
from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade
from sitepulse.settings import load_settings

BARE_ID = "bench-bare"
INGEST_ID = "bench-ingest"


def _client(client_id: str, protocol: str, manual_ack: bool = False) -> mqtt.Client:
    v5 = protocol == "5"
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=manual_ack,
    )


def _connect(client: mqtt.Client, broker: EmbeddedBroker, protocol: str) -> None:
    if protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 65535
        client.connect(broker.host, broker.port, clean_start=False, properties=props)
    else:
        client.connect(broker.host, broker.port)


def _register_session(broker: EmbeddedBroker, client_id: str, topic_filter: str, protocol: str) -> None:
    """Create the persistent session and subscription so the backlog queues for it."""
    client = _client(client_id, protocol)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    _connect(client, broker, protocol)
    client.loop_start()
    client.subscribe(topic_filter, 1)
    if not done.wait(10):
        raise RuntimeError(f"subscribe of {client_id} timed out")
    client.disconnect()
    client.loop_stop()


def _payloads(n: int, batch_size: int, run: int) -> list[tuple[str, bytes]]:
    rng = random.Random(run)
    now = time.time() - 3600
    messages = []
    for i in range(n):
        site, machine = f"bench{run}", f"m{i % 50:03d}"
        samples = [
            {
                "ts": round(now + i * 0.01 + k * 0.001, 3),
                "seq": i * batch_size + k,
                "lat": -33.0 + rng.random() * 0.01,
                "lon": 151.0 + rng.random() * 0.01,
                "speed_kmh": rng.random() * 40,
                "heading_deg": rng.random() * 360,
                "payload_kg": rng.random() * 90000,
                "fuel_used_l": 1000 + i * 0.01,
                "engine_hours": 5000 + i * 0.001,
                "engine_on": True,
            }
            for k in range(batch_size)
        ]
        body = samples[0] if batch_size == 1 else samples
        messages.append((telemetry_topic(site, machine), orjson.dumps(body)))
    return messages


def bare_drain(broker: EmbeddedBroker, n: int, protocol: str) -> float:
    """Seconds for a bare paho client to receive and JSON-parse n queued messages."""
    count = 0
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal count
        orjson.loads(message.payload)
        count += 1
        if count >= n:
            done.set()

    client = _client(BARE_ID, protocol)
    client.on_message = on_message
    started = time.perf_counter()
    _connect(client, broker, protocol)
    client.loop_start()
    if not done.wait(600):
        raise RuntimeError(f"bare drain got {count} of {n}")
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def ingest_drain(broker: EmbeddedBroker, database_url: str, n: int, protocol: str) -> float:
    """Seconds for one SitePulse ingest worker to commit and ack n queued messages."""
    settings = load_settings(database_url=database_url, mqtt_url=broker.url, ingest_client_id=INGEST_ID)
    stop = threading.Event()
    worker = IngestWorker(settings, stop, index=0, protocol=protocol)
    thread = threading.Thread(target=worker.run, name="ingest")
    started = time.perf_counter()
    thread.start()
    deadline = time.monotonic() + 600
    while worker.counters.acked_messages < n and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join(60)
    if worker.counters.acked_messages < n:
        raise RuntimeError(f"ingest acked {worker.counters.acked_messages} of {n}")
    return elapsed


def run_once(
    broker: EmbeddedBroker, pg: EmbeddedPostgres, n: int, batch_size: int, run: int, protocol: str
) -> dict[str, float]:
    dbname = f"bench_{run}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {dbname}")
    database_url = pg.url_for(dbname)
    with psycopg.connect(database_url, autocommit=True) as conn:
        upgrade(conn)
    _register_session(broker, BARE_ID, TELEMETRY_FILTER, protocol)
    _register_session(broker, f"{INGEST_ID}-0", TELEMETRY_FILTER, protocol)  # what the worker subscribes to
    messages = _payloads(n, batch_size, run)
    publish_backlog(messages, broker.url, "bench-publisher")
    bare_s = bare_drain(broker, n, protocol)
    ingest_s = ingest_drain(broker, database_url, n, protocol)
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
        rejected = conn.execute("SELECT count(*) FROM ingest_rejects").fetchone()[0]
    rows = n * batch_size
    return {
        "bare_msgs": n / bare_s,
        "bare_rows": rows / bare_s,
        "ingest_msgs": n / ingest_s,
        "ingest_rows": rows / ingest_s,
        "ratio": bare_s / ingest_s,
        "lost": rows - stored - rejected,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print messages/s, rows/s, the ratio and rows lost."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=30_000, help="messages per run (default 30000)")
    parser.add_argument(
        "--batch-size", type=int, action="append", help="samples per message; repeat for several (default: 1 and 10)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per batch size; medians are printed")
    parser.add_argument(
        "--protocol", choices=["5", "3.1.1", "both"], default="5", help="MQTT version (both: 5, then 3.1.1)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = args.batch_size or [1, 10]
    with tempfile.TemporaryDirectory(prefix="sitepulse-bench-") as tmp:
        broker = EmbeddedBroker(Path(tmp) / "mqtt")
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast_unsafe=True)
        broker.start()
        pg.start()
        try:
            protocols = ["5", "3.1.1"] if args.protocol == "both" else [args.protocol]
            print(f"{args.messages} messages per run, {args.repeat} run(s) per size; medians, ratio per run")
            header = (
                f"{'MQTT':>5} {'samples/msg':>11} {'bare msg/s':>11} {'ingest msg/s':>13} {'ingest rows/s':>14}"
                f" {'ratio':>6} {'lost':>5}"
            )
            print(header)
            failed = False
            for protocol, size in [(p, s) for p in protocols for s in sizes]:
                seed = size * 100 + (1000 if protocol == "3.1.1" else 0)
                results = [run_once(broker, pg, args.messages, size, seed + r, protocol) for r in range(args.repeat)]
                med = {k: statistics.median(r[k] for r in results) for k in results[0]}
                lost = sum(r["lost"] for r in results)
                failed |= lost != 0
                print(
                    f"{protocol:>5} {size:>11} {med['bare_msgs']:>11,.0f} {med['ingest_msgs']:>13,.0f}"
                    f" {med['ingest_rows']:>14,.0f} {med['ratio']:>6.2f} {lost:>5}"
                )
                if args.repeat > 1:
                    print(
                        "                  runs: "
                        + "; ".join(
                            f"bare {r['bare_msgs']:,.0f} ingest {r['ingest_msgs']:,.0f} rows/s {r['ingest_rows']:,.0f}"
                            f" ratio {r['ratio']:.2f} lost {r['lost']}"
                            for r in results
                        )
                    )
        finally:
            pg.destroy()
            broker.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
