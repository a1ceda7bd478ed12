"""RabbitMQ ingest mode: each message read by one of two workers, nothing lost or stored twice across a
worker's kill -9 and a broker restart. Real RabbitMQ (MQTT plugin + consistent-hash exchange + quorum
queues), real PostgreSQL, workers as real processes (``python -m ingest``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pika
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import amqp
from ingest.embedded_rabbitmq import EmbeddedRabbitMQ, available
from ingest.topics import telemetry_topic
from tests.conftest import stop_processes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MACHINES = 40


@pytest.fixture
def rabbit(tmp_path: Path) -> Iterator[EmbeddedRabbitMQ]:
    if not available():
        message = "rabbitmq-server is not installed: bash scripts/ensure-system-packages.sh rabbitmq-server"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = EmbeddedRabbitMQ(tmp_path / "rabbit")
    server.start()
    yield server
    server.stop(kill=True)


def _worker(database_url: str, rabbit: EmbeddedRabbitMQ, index: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SITEPULSE_DATABASE_URL": database_url, "SITEPULSE_INGEST_AMQP_URL": rabbit.amqp_url,
           "SITEPULSE_INGEST_PARTITION": f"{index}/2", "SITEPULSE_INGEST_BATCH_MS": "50",
           "SITEPULSE_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "ingest"], cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115


def _publish(rabbit: EmbeddedRabbitMQ, first: int, count: int, pace_s: float = 0.0) -> None:
    """QoS 1 over MQTT 3.1.1 to RabbitMQ's MQTT plugin; returns when every PUBACK is in."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{first}", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(500)
    client.connect("127.0.0.1", rabbit.mqtt_port)
    client.loop_start()
    now = time.time() - 600
    infos = []
    for i in range(first, first + count):
        body = orjson.dumps({"ts": now + i * 0.01, "seq": i, "lat": 1.0, "lon": 2.0, "engine_on": True})
        infos.append(client.publish(telemetry_topic("rmq", f"m{i % MACHINES:02d}"), body, qos=1))
        if pace_s and i % 200 == 0:
            time.sleep(pace_s)
    for info in infos:
        info.wait_for_publish(60)
        assert info.is_published()
    client.disconnect()
    client.loop_stop()


def _stored(url: str) -> tuple[int, int]:
    with psycopg.connect(url, connect_timeout=3) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT (machine_id, ts, seq)) FROM telemetry").fetchone()


def test_kill_9_of_a_worker_and_a_broker_restart_lose_nothing_store_nothing_twice(
    rabbit: EmbeddedRabbitMQ, fresh_database_url: str, tmp_path: Path
) -> None:
    amqp.setup(rabbit.amqp_url, 2)
    log = tmp_path / "workers.log"
    workers = [_worker(fresh_database_url, rabbit, i, log) for i in range(2)]
    try:
        publisher = threading.Thread(target=_publish, args=(rabbit, 0, 4000, 0.02))
        publisher.start()
        time.sleep(1.5)
        os.kill(workers[0].pid, signal.SIGKILL)  # mid-stream: its unacked deliveries go back to its queue
        workers[0].wait(10)
        publisher.join(120)
        before_restart = _stored(fresh_database_url)[0]
        rabbit.restart()  # quorum queues and their unconsumed messages survive; worker 1 reconnects
        workers[0] = _worker(fresh_database_url, rabbit, 0, log)  # worker 0's backlog waited in its queue
        _publish(rabbit, 4000, 2000)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _stored(fresh_database_url)[0] < 6000:
            time.sleep(0.5)
        total, distinct = _stored(fresh_database_url)
        assert total == distinct == 6000, (
            f"{total} rows ({before_restart} before the restart), {distinct} distinct of 6000;"
            f" {log.read_text()[-2000:]}")
        # each queue held only its machines: every message was delivered to exactly one worker
        conn = pika.BlockingConnection(amqp.connection_parameters(rabbit.amqp_url))
        try:
            channel = conn.channel()
            left = [channel.queue_declare(amqp.queue_name(i), passive=True).method.message_count for i in range(2)]
        finally:
            conn.close()
        assert left == [0, 0]
    finally:
        stop_processes(workers, 20)


def test_unreachable_rabbitmq_is_one_line_and_exit_code_2(fresh_database_url: str) -> None:
    """A wrong SITEPULSE_INGEST_AMQP_URL is a mistake the user fixes: one line naming the setting, no traceback."""
    env = {**os.environ, "SITEPULSE_DATABASE_URL": fresh_database_url,
           "SITEPULSE_INGEST_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F"}
    done = subprocess.run([sys.executable, "-m", "ingest"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SITEPULSE_INGEST_AMQP_URL" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
