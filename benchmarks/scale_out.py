"""Scale-out: 1, 2 and 4 ingest worker processes, real Mosquitto and PostgreSQL.

For each worker count and repeat: a fresh migrated database; N persistent MQTT v5 sessions (the ids
the workers will use) subscribed the way the workers split the stream: ``--split partitions`` (the
default) a plain ``sites/+/machines/+/telemetry`` each, so every session queues the whole backlog and
each worker stores its machines; ``--split shared`` ``$share/sitepulse-ingest/...``, so Mosquitto
spreads the backlog over the sessions; a backlog of M QoS 1 messages published while they are
offline; then ``python -m ingest --workers N`` is started and timed until every row is
stored or rejected. Reported: messages/s and rows/s (from process start, and "drain" from the
first committed row, which leaves out process and connection start-up), and loss =
published rows - stored - rejected. Medians over the repeats.

    .venv/bin/python benchmarks/scale_out.py                          # 20,000 messages x 3 repeats
    .venv/bin/python benchmarks/scale_out.py --messages 60000 --samples 10 --workers 1,2,4 --repeat 3
    .venv/bin/python benchmarks/scale_out.py --split shared     # the $share subscription instead
    .venv/bin/python benchmarks/scale_out.py --split rabbitmq   # RabbitMQ: MQTT plugin + hash exchange + quorum queues
    .venv/bin/python benchmarks/scale_out.py --split sites      # Mosquitto routes each site to one worker's session

With ``--split rabbitmq`` the broker is Debian's RabbitMQ (``ingest.embedded_rabbitmq``): devices publish
the same MQTT to its MQTT plugin, a consistent-hash exchange spreads the machines over N quorum queues
(declared before the backlog is published) and worker i consumes queue i (``SITEPULSE_INGEST_AMQP_URL``),
so each message is delivered once. With ``--split sites`` the 50 machines belong to ``--sites`` sites and
worker i of N subscribes to its sites only (``SITEPULSE_INGEST_SITES``, positions i, i+N, ... of the list), so
Mosquitto delivers each message to one worker's persistent session. The last line is
``scale-out: 2 workers / 1 worker = X.XX, lost N`` (median drain msg/s, loss summed over every run).

The broker and database run on the same machine as the workers: on 2 cores, more workers
contend with Mosquitto and PostgreSQL for CPU, which is what the figures show.
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/ingest.py sits next to this file: keep this folder off sys.path so "import ingest" is the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import orjson
import paho.mqtt.client as mqtt
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import amqp
from ingest.embedded_rabbitmq import EmbeddedRabbitMQ
from ingest.topics import TELEMETRY_FILTER, Partition, assigned_sites, shared, site_filters, telemetry_topic
from simulators.outputs import publish_backlog
from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade

ROOT = Path(__file__).resolve().parents[1]


def site_ids(run: str, count: int) -> list[str]:
    """The run's sites; machine m{k} belongs to site k % count."""
    return [f"scale{run}s{j}" for j in range(count)]


def register_sessions(broker: EmbeddedBroker, client_ids: list[str], split: str = "partitions",
                      sites: list[str] | None = None) -> None:
    """Persistent v5 sessions subscribed as the workers will be, so the backlog queues for them."""
    for index, client_id in enumerate(client_ids):
        if split == "sites":
            own = assigned_sites(",".join(sites or []), (Partition(index, len(client_ids)),))
            filters = [(f, 1) for site in own for f in site_filters(site)]
        else:
            filters = [(shared(TELEMETRY_FILTER) if split == "shared" else TELEMETRY_FILTER, 1)]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        done = threading.Event()
        client.on_subscribe = lambda *a, done=done: done.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(broker.host, broker.port, clean_start=False, properties=props)
        client.loop_start()
        client.subscribe(filters)
        if not done.wait(10):
            raise RuntimeError(f"subscribe of {client_id} timed out")
        client.disconnect()
        client.loop_stop()


def remove_sessions(broker: EmbeddedBroker, client_ids: list[str]) -> None:
    """End the workers' persistent sessions (clean start, expiry 0), so they leave the share group.

    A session left behind stays in the group and keeps being handed its share of new messages,
    which then wait for a worker that never comes back: retire a worker's session when scaling down.
    """
    for client_id in client_ids:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        client.connect(broker.host, broker.port, clean_start=True, properties=props)
        client.loop_start()
        time.sleep(0.1)
        client.disconnect()
        client.loop_stop()


class RabbitBroker:
    """RabbitMQ seen as the MQTT broker devices publish to (host/port), plus its AMQP URL for the workers."""

    def __init__(self, server: EmbeddedRabbitMQ) -> None:
        self.server = server
        self.host = "127.0.0.1"
        self.port = server.mqtt_port
        self.url = server.amqp_url

    def reset_queues(self, workers: int) -> None:
        """Delete the previous run's queues and exchange, then declare ``workers`` fresh quorum queues."""
        import pika

        conn = pika.BlockingConnection(amqp.connection_parameters(self.url))
        try:
            channel = conn.channel()
            for index in range(8):
                channel.queue_delete(amqp.queue_name(index))
            channel.exchange_delete(amqp.EXCHANGE)
        finally:
            conn.close()
        amqp.setup(self.url, workers)


def queue_backlog(broker: EmbeddedBroker | RabbitBroker, n: int, samples: int, run: str,
                    sites: int = 1) -> tuple[int, float]:
    """Publish n QoS 1 messages of ``samples`` samples each over 50 machines; returns (rows, seconds)."""
    site_of = site_ids(run, sites) if sites > 1 else [f"scale{run}"]
    base = time.time() - 3600

    def messages() -> Iterator[tuple[str, bytes]]:
        for i in range(n):
            body = [{"ts": round(base + i * 0.01 + k * 0.001, 3), "seq": i * samples + k,
                     "lat": -33.0 + (i % 97) * 1e-4, "lon": 151.0, "speed_kmh": 20.0, "payload_kg": float(i % 90_000),
                     "engine_on": True} for k in range(samples)]
            machine = i % 50
            yield (telemetry_topic(site_of[machine % len(site_of)], f"m{machine:03d}"),
                   orjson.dumps(body[0] if samples == 1 else body))

    sent = publish_backlog(messages(), f"mqtt://{broker.host}:{broker.port}", f"scale-publisher-{run}")
    return n * samples, sent.seconds


def cpu_seconds(roots: list[int]) -> float:
    """User + system CPU seconds of these processes and their children so far (gone ones count 0)."""
    total = 0.0
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with_times = proc.cpu_times()
                total += with_times.user + with_times.system
        except psutil.Error:
            continue
    return total


def postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.pgdata / "postmaster.pid").read_text().split()[0])


class CpuMeter:
    """CPU seconds the broker, the database and the workers spend during a drain (for the capacity model)."""

    def __init__(self, broker_pid: int, postmaster_pid: int) -> None:
        self.pids = {"broker": broker_pid, "database": postmaster_pid}
        self.spent: dict[str, float] = {}

    def start(self, workers_pid: int) -> None:
        self.pids["workers"] = workers_pid
        self._start = {k: cpu_seconds([pid]) for k, pid in self.pids.items()}

    def first_row(self) -> None:
        """From here on the workers are up: their start-up (spawn, imports, connect) is left out."""
        self._start = {k: cpu_seconds([pid]) for k, pid in self.pids.items()}

    def stop(self) -> None:
        self.spent = {k: cpu_seconds([pid]) - self._start[k] for k, pid in self.pids.items()}


def drain(database_url: str, mqtt_url: str, workers: int, client_id: str, expected_rows: int,
          timeout: float, split: str = "partitions", sites: list[str] | None = None,
          meter: CpuMeter | None = None) -> dict[str, float]:
    """Run ``python -m ingest --workers N`` until every row is stored or rejected (or timeout)."""
    env = {**os.environ, "SITEPULSE_DATABASE_URL": database_url, "SITEPULSE_MQTT_URL": mqtt_url,
           "SITEPULSE_INGEST_CLIENT_ID": client_id, "SITEPULSE_LOG_LEVEL": "WARNING",
           "SITEPULSE_INGEST_SHARED": "true" if split == "shared" else "false"}
    if split == "rabbitmq":
        env["SITEPULSE_INGEST_AMQP_URL"] = env.pop("SITEPULSE_MQTT_URL")
    if split == "sites":
        env["SITEPULSE_INGEST_SITES"] = ",".join(sites or [])
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "ingest", "--workers", str(workers)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if meter is not None:
        meter.start(process.pid)
    first_row_at = None
    first_rows = 0
    stored = rejected = 0
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while time.perf_counter() - started < timeout:
                stored = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
                rejected = conn.execute("SELECT count(*) FROM ingest_rejects").fetchone()[0]
                if stored and first_row_at is None:  # the first batch is committed: workers are up
                    first_row_at = time.perf_counter()
                    first_rows = stored
                    if meter is not None:
                        meter.first_row()
                if stored + rejected >= expected_rows or process.poll() is not None:
                    break
                time.sleep(0.05)
        done_at = time.perf_counter()
        if meter is not None:
            meter.stop()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
    if process.returncode not in (0, -signal.SIGTERM) and stored + rejected < expected_rows:
        raise RuntimeError(f"ingest exited with {process.returncode}: {err[-2000:]}")
    total_s = done_at - started
    drain_s = done_at - (first_row_at or started)
    return {"total_s": total_s, "drain_s": drain_s, "stored": stored, "rejected": rejected,
            "lost": expected_rows - stored - rejected, "first_rows": first_rows}


def run(pg: EmbeddedPostgres, broker: EmbeddedBroker | RabbitBroker, workers: int, repeat: int, messages: int,
        samples: int, timeout: float, split: str = "partitions", sites: int = 8) -> dict[str, float]:
    tag = f"w{workers}r{repeat}"
    dbname = f"scale_{tag}"
    database_url = pg.fresh_database(dbname)
    with psycopg.connect(database_url, autocommit=True) as conn:
        upgrade(conn)
    client_id = f"scale-{tag}"
    if isinstance(broker, RabbitBroker):
        broker.reset_queues(workers)
        rows, publish_s = queue_backlog(broker, messages, samples, tag)
        result = drain(database_url, broker.url, workers, client_id, rows, timeout, split)
    else:
        names = site_ids(tag, sites) if split == "sites" else None
        register_sessions(broker, [f"{client_id}-{i}" for i in range(workers)], split, names)
        rows, publish_s = queue_backlog(broker, messages, samples, tag, sites if split == "sites" else 1)
        meter = CpuMeter(broker._process.pid, postmaster_pid(pg)) if broker._process else None
        try:
            result = drain(database_url, broker.url, workers, client_id, rows, timeout, split, names, meter)
            drained = messages * (rows - result["first_rows"]) / rows  # messages after the first commit
            if meter is not None and meter.spent and drained >= 1:
                result.update({f"{k}_us_per_msg": v / drained * 1e6 for k, v in meter.spent.items()})
        finally:
            remove_sessions(broker, [f"{client_id}-{i}" for i in range(workers)])
    return {**result, "rows": rows, "publish_s": publish_s,
            "msgs_per_s": messages / result["total_s"], "rows_per_s": rows / result["total_s"],
            "drain_msgs_per_s": messages / result["drain_s"], "drain_rows_per_s": rows / result["drain_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="backlog size per run")
    parser.add_argument("--samples", type=int, default=1, help="samples per message (devices may send arrays)")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per drain")
    parser.add_argument("--split", choices=["partitions", "shared", "rabbitmq", "sites"], default="partitions",
                        help="how workers split the stream (docs/RELIABILITY.md: shared loses on a broker restart)")
    parser.add_argument("--sites", type=int, default=8, help="with --split sites: sites the 50 machines belong to")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    print(f"{os.cpu_count()} CPUs; {args.messages} messages x {args.samples} sample(s); repeats {args.repeat};"
          f" split: {args.split}{f' over {args.sites} sites' if args.split == 'sites' else ''};"
          f" load average {os.getloadavg()[0]:.1f}")
    print(f"{'workers':>7} {'msg/s':>8} {'rows/s':>8} {'drain msg/s':>11} {'drain rows/s':>12} {'lost':>5}"
          f" {'rejected':>8} {'runs (msg/s)':>20}  CPU us/msg: broker database workers")
    with tempfile.TemporaryDirectory(prefix="sitepulse-scale-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast_unsafe=False)
        rabbit = EmbeddedRabbitMQ(Path(tmp) / "rabbit") if args.split == "rabbitmq" else None
        broker: EmbeddedBroker | RabbitBroker = RabbitBroker(rabbit) if rabbit else EmbeddedBroker(Path(tmp) / "mqtt")
        pg.start()
        if rabbit is not None:
            rabbit.start()
        else:
            broker.start()
        drain_rates: dict[int, float] = {}
        lost_total = 0
        try:
            for workers in counts:
                results = [run(pg, broker, workers, r, args.messages, args.samples, args.timeout, args.split,
                               args.sites) for r in range(args.repeat)]
                med = {k: statistics.median(r[k] for r in results) for k in set.intersection(*map(set, results))}
                drain_rates[workers] = med["drain_msgs_per_s"]
                lost_total += sum(r["lost"] for r in results)
                runs = " ".join(f"{r['msgs_per_s']:.0f}" for r in results)
                cpu = "  ".join(f"{med[k + '_us_per_msg']:.1f}" for k in ("broker", "database", "workers")
                                if k + "_us_per_msg" in med)
                print(f"{workers:>7} {med['msgs_per_s']:>8.0f} {med['rows_per_s']:>8.0f}"
                      f" {med['drain_msgs_per_s']:>11.0f} {med['drain_rows_per_s']:>12.0f}"
                      f" {max(r['lost'] for r in results):>5} {max(r['rejected'] for r in results):>8} {runs:>20}"
                      f"  {cpu}  (load {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            if rabbit is not None:
                rabbit.stop()
            else:
                broker.stop()
            pg.stop()
    if 1 in drain_rates and 2 in drain_rates:
        print(f"scale-out: 2 workers / 1 worker = {drain_rates[2] / drain_rates[1]:.2f}, lost {lost_total}")
    else:
        print(f"scale-out: 2 workers / 1 worker = n/a (run --workers 1,2), lost {lost_total}")
    return 1 if lost_total else 0


if __name__ == "__main__":
    sys.exit(main())
