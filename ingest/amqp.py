"""Optional ingest mode: RabbitMQ queues instead of MQTT subscriptions (``ingest_amqp_url``).

Why: Mosquitto 2.0 gives each message to exactly one of N workers only through ``$share``, which
it forgets across a restart; partitions make every worker read the whole stream. RabbitMQ (Debian's
``rabbitmq-server`` with its bundled MQTT and consistent-hash-exchange plugins) does the split in the
broker: devices publish MQTT to it unchanged, the MQTT plugin puts each message on ``amq.topic``
(confirmed before the device's PUBACK), an exchange-to-exchange binding forwards telemetry, birth and
status to a consistent-hash exchange, and that exchange hashes the routing key (the topic: one
machine's messages stay in one queue, in order) onto N durable quorum queues, one per worker. A worker
acks a batch's deliveries only after its database commit, so a killed worker's messages are redelivered
and a broker restart keeps the queues (quorum queues are replicated logs on disk).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import pika
import pika.exceptions

from ingest.consumer import Inbound
from sitepulse.retry import backoff_s

log = logging.getLogger(__name__)
# pika logs every failed connection attempt as ERROR with a traceback; this module reports them in one line
logging.getLogger("pika").setLevel(logging.CRITICAL)

EXCHANGE = "sitepulse.ingest"
SOURCE_EXCHANGE = "amq.topic"  # where RabbitMQ's MQTT plugin publishes
ROUTING_KEYS = ("sites.*.machines.*.telemetry", "sites.*.machines.*.birth", "sites.*.machines.*.status")
PREFETCH = 20_000  # unacked deliveries per worker: a few batches of 5,000 in flight
_TO_MQTT = str.maketrans("./", "/.")  # the MQTT plugin swaps '/' and '.' between topic and routing key


def queue_name(index: int) -> str:
    return f"{EXCHANGE}.{index}"


def connection_parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = 30
    params.blocked_connection_timeout = 60
    return params


def declare_topology(channel: Any, queues: int) -> None:
    """Declare (idempotently) the hash exchange, its binding from amq.topic and ``queues`` quorum queues.

    Run it before devices publish (``sitepulse ingest`` does at start): messages that reach the hash
    exchange while no queue is bound are dropped by RabbitMQ. Changing the number of queues moves
    machines between queues: drain first (docs/DEPLOYMENT.md).
    """
    channel.exchange_declare(EXCHANGE, exchange_type="x-consistent-hash", durable=True)
    for key in ROUTING_KEYS:
        channel.exchange_bind(destination=EXCHANGE, source=SOURCE_EXCHANGE, routing_key=key)
    for index in range(queues):
        name = queue_name(index)
        channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(name, EXCHANGE, routing_key="1")  # equal weights on the hash ring


def setup(url: str, queues: int) -> None:
    """Connect once and declare the topology; a refusal is one readable line (ConfigError)."""
    from sitepulse.errors import ConfigError

    try:
        conn = pika.BlockingConnection(connection_parameters(url))
    except pika.exceptions.AMQPError as exc:
        raise ConfigError("SITEPULSE_INGEST_AMQP_URL", f"RabbitMQ refused or is unreachable ({exc!r})") from None
    try:
        declare_topology(conn.channel(), queues)
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise ConfigError("SITEPULSE_INGEST_AMQP_URL", f"RabbitMQ refused the ingest topology: {exc.reply_text}"
                          " (is the rabbitmq_consistent_hash_exchange plugin enabled?)") from None
    finally:
        conn.close()


class AmqpConsumer:
    """Consumes one quorum queue into the worker's inbox; same interface as MqttConsumer."""

    def __init__(self, url: str, index: int, queues: int, inbox: queue.SimpleQueue[Inbound]) -> None:
        self.url = url
        self.index = index
        self.queues = queues
        self.inbox = inbox
        self.version: str | None = None
        self.reconnects = 0
        self._epoch = 0
        self._conn: Any = None
        self._channel: Any = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._intake_open = True
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name=f"amqp-{self.index}", daemon=True)
        self._thread.start()
        self._connected.wait(timeout)

    def close_intake(self) -> None:
        self._intake_open = False

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        failures = 0  # in a row; the wait before reconnecting is the shared back-off (sitepulse/retry.py)
        while not self._stopping.is_set():
            try:
                self._session()
                failures = 0
            except (pika.exceptions.AMQPError, OSError) as exc:
                failures += 1
                log.warning("RabbitMQ connection lost (%r); reconnecting in %.0fs", exc,
                            backoff_s(failures, 1.0, 10.0))
            with self._lock:
                self._epoch += 1
                self._connected.clear()
                self._conn = self._channel = None
            self._stopping.wait(backoff_s(max(failures, 1), 1.0, 10.0))

    def _session(self) -> None:
        conn = pika.BlockingConnection(connection_parameters(self.url))
        try:
            channel = conn.channel()
            declare_topology(channel, self.queues)
            channel.basic_qos(prefetch_count=PREFETCH)
            with self._lock:
                self._epoch += 1
                epoch = self._epoch
                if self.version is not None:
                    self.reconnects += 1
                self.version = "amqp-0.9.1"
                self._conn, self._channel = conn, channel
            put = self.inbox.put
            translate = _TO_MQTT

            def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
                if self._intake_open:
                    now = time.time()
                    put((method.routing_key.translate(translate), body, method.delivery_tag, 1, epoch, now))

            channel.basic_consume(queue_name(self.index), on_message, auto_ack=False)
            self._connected.set()
            while not self._stopping.is_set():
                conn.process_data_events(time_limit=0.2)
        finally:
            try:
                if conn.is_open:
                    conn.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    def ack(self, messages: list[Inbound]) -> int:
        """Ack a committed batch (one multiple-ack of its last delivery); stale deliveries are skipped."""
        with self._lock:
            conn, channel, epoch = self._conn, self._channel, self._epoch
        if conn is None:
            return 0
        tags = [m[2] for m in messages if m[4] == epoch]
        if not tags:
            return 0
        last = max(tags)
        try:
            conn.add_callback_threadsafe(lambda: channel.basic_ack(last, multiple=True))
        except (pika.exceptions.AMQPError, OSError):
            return 0
        return len(tags)
