"""One ingest worker (MQTT -> decode -> batch -> commit -> ack) and a supervisor for N of them."""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

from ingest.amqp import AmqpConsumer
from ingest.amqp import setup as amqp_setup
from ingest.consumer import Inbound, MqttConsumer
from ingest.contract import Decoded, Decoder
from ingest.metrics import IngestCounters, save_counters, worker_identity
from ingest.topics import parse_partitions
from ingest.writer import DatabaseUnavailable, TelemetryWriter, WriteResult
from sitepulse import memtrace
from sitepulse.errors import ConfigError
from sitepulse.settings import Settings
from sitepulse.supervisor import Supervisor

log = logging.getLogger(__name__)

STATS_EVERY_S = 5.0
LOG_EVERY_S = 30.0
STOP_GRACE_S = 10.0  # how long a stopping worker keeps retrying an unreachable database
RETRY_MAX_S = 5.0
SHARE_GROUP = "sitepulse-ingest"


def _require(settings: Settings) -> tuple[str, str]:
    if settings.database_url is None:
        raise ConfigError("SITEPULSE_DATABASE_URL", "ingest needs a database URL (postgresql://...)")
    if settings.ingest_amqp_url is not None:
        return settings.database_url.get_secret_value(), settings.ingest_amqp_url.get_secret_value()
    if settings.mqtt_url is None:
        raise ConfigError("SITEPULSE_MQTT_URL", "ingest needs a broker URL (mqtt://host:port)")
    return settings.database_url.get_secret_value(), settings.mqtt_url.get_secret_value()


class IngestWorker:
    """Drains the consumer's queue into batches, commits each, then acks its messages."""

    def __init__(self, settings: Settings, stop_event: Any, *, index: int = 0, protocol: str = "auto") -> None:
        database_url, mqtt_url = _require(settings)
        self.stop_event = stop_event
        self.batch_rows = settings.ingest_batch_rows
        self.batch_s = settings.ingest_batch_ms / 1000
        self.decoder = Decoder(settings.ingest_max_payload_bytes)
        self.front: Any = None  # the decoder layer when SITEPULSE_DECODERS_FILE names routes (decoders/README.md)
        if settings.decoders_file is not None:
            from decoders.front import load_front

            self.front = load_front(settings, self.decoder, publish=self._publish)
            if self.front.topic_filters and settings.ingest_amqp_url is not None:
                raise ConfigError("SITEPULSE_DECODERS_FILE", "has MQTT routes, which the RabbitMQ ingest mode"
                                  " (SITEPULSE_INGEST_AMQP_URL) does not carry; use MQTT ingest for them")
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.writer = TelemetryWriter(database_url)
        partitions = parse_partitions(settings.ingest_partition) if settings.ingest_partition else ()
        self.consumer: MqttConsumer | AmqpConsumer
        if settings.ingest_amqp_url is not None:  # mqtt_url is the AMQP URL here
            # a separately started worker i/N consumes queue i of N; under --workers N the index is its own
            queue_index, queues = (partitions[0].index, partitions[0].count) if partitions else (
                index, settings.ingest_amqp_queues)
            self.consumer = AmqpConsumer(mqtt_url, queue_index, queues, self.inbox)
        else:
            self.consumer = MqttConsumer(mqtt_url, f"{settings.ingest_client_id}-{index}", self.inbox,
                                         protocol=protocol, share_group=SHARE_GROUP if settings.ingest_shared else None,
                                         partitions=partitions,
                                         extra_filters=self.front.topic_filters if self.front else ())
        self.worker_id = worker_identity(index)
        self.counters = IngestCounters()
        self._last_stats = self._last_log = time.monotonic()

    def run(self) -> None:
        """Until stop_event is set; then flush what was received, ack it, and disconnect."""
        self.writer.open()
        try:
            self.consumer.start()
            self._save_stats()
            self._pipeline()
        finally:
            self.consumer.stop()
            self._save_stats(force=True)
            log.info("ingest worker %s stopped: %s", self.worker_id, self.counters.summary())
            self.writer.close()

    def _pipeline(self) -> None:
        """Decode in this thread while a committer thread writes the previous batch.

        The hand-off holds one batch, so at most three are in memory (committing, waiting,
        being decoded); batches are committed and acked in arrival order by the one committer,
        and all database work (writes, retries, stats) happens in that thread.
        """
        handoff: queue.Queue[tuple[Decoded, list[Inbound]] | None] = queue.Queue(maxsize=1)
        failure: list[BaseException] = []
        gave_up = threading.Event()  # stopping with the database down: leave the rest unacked

        def commit_loop() -> None:
            try:
                while True:
                    try:
                        item = handoff.get(timeout=0.25)
                    except queue.Empty:
                        self._periodic()
                        continue
                    if item is None:
                        return
                    if not gave_up.is_set() and not self._commit(*item):
                        gave_up.set()
                    self._periodic()
            except BaseException as exc:  # surfaced in the decoding thread
                failure.append(exc)
                gave_up.set()

        committer = threading.Thread(target=commit_loop, name=f"ingest-commit-{self.worker_id}", daemon=True)
        committer.start()

        def hand_off(item: tuple[Decoded, list[Inbound]] | None) -> bool:
            while committer.is_alive():
                try:
                    handoff.put(item, timeout=0.25)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            self._decode_loop(hand_off, gave_up)
        finally:
            hand_off(None)
            committer.join()
        if failure:
            raise failure[0]

    def _decode_loop(self, hand_off: Any, gave_up: threading.Event) -> None:
        batch = Decoded()
        pending: list[Inbound] = []
        decode_into, get = (self.front or self.decoder).decode_into, self.inbox.get
        fromtimestamp = datetime.fromtimestamp
        while not gave_up.is_set():
            stopping = self.stop_event.is_set()
            if stopping:
                self.consumer.close_intake()  # later messages stay unacked at the broker
            try:
                item = get(timeout=0.05)
            except queue.Empty:
                if stopping:
                    return
                continue
            pending.append(item)
            if item[1] is not None:  # None: another partition's message, acknowledged unread
                decode_into(batch, item[0], item[1], fromtimestamp(item[5], UTC))
            deadline = time.monotonic() + self.batch_s
            while batch.sample_count < self.batch_rows and len(pending) < self.batch_rows:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = get(timeout=remaining)
                except queue.Empty:
                    break
                pending.append(item)
                if item[1] is not None:
                    decode_into(batch, item[0], item[1], fromtimestamp(item[5], UTC))
            batch.finish()  # column checks here, so the committer thread only writes
            if not hand_off((batch, pending)):
                return
            batch = Decoded()
            pending = []

    def _commit(self, batch: Decoded, pending: list[Inbound]) -> bool:
        """Write with retries; ack only after commit. False if stopping while the database is down."""
        delay = 0.2
        give_up = None
        if not (len(batch.block()) or batch.rejects or batch.births or batch.statuses):
            # only other partitions' messages: nothing to store, acknowledge them in order
            self._count(batch, pending, WriteResult(), self.consumer.ack(pending))
            return True
        while True:
            try:
                result = self.writer.write(batch)
                break
            except (*DatabaseUnavailable, ConfigError) as exc:  # ConfigError: reconnect refused
                self.counters.db_errors += 1
                self.writer.close()
                if self.stop_event.is_set():
                    give_up = give_up or time.monotonic() + STOP_GRACE_S
                    if time.monotonic() > give_up:
                        log.warning("stopping with %d messages not stored; the broker re-delivers them", len(pending))
                        return False
                log.warning(
                    "database unavailable (%s); not acking %d messages, retrying in %.1fs",
                    str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__,
                    len(pending),
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        acked = self.consumer.ack(pending)
        self._count(batch, pending, result, acked)
        return True

    def _count(self, batch: Decoded, pending: list[Inbound], result: WriteResult, acked: int) -> None:
        c = self.counters
        skipped = sum(1 for m in pending if m[1] is None)
        c.other_partition_messages += skipped
        c.received_messages += len(pending) - skipped
        c.received_samples += result.rows + sum(1 for r in batch.rejects if r.reason.startswith("sample "))
        c.stored_rows += result.stored
        c.duplicate_rows += result.duplicates
        c.rejected += result.rejected
        if len(pending) > skipped:  # a batch of only other partitions' messages commits nothing
            c.batches += 1
        c.acked_messages += acked
        c.commit_seconds_sum += result.seconds
        c.last_commit_seconds = result.seconds
        c.commit_seconds_max = max(c.commit_seconds_max, result.seconds)
        c.lag_seconds = time.time() - pending[0][5]
        c.queue_depth = self.inbox.qsize()
        c.mqtt_reconnects = self.consumer.reconnects
        if self.front is not None:
            self.front.count(pending, batch.rejects, c)

    def _publish(self, topic: str, payload: bytes) -> bool:
        """A decoder's command to a device (Sparkplug rebirth request) on this worker's session."""
        publish = getattr(self.consumer, "publish", None)
        return bool(publish and publish(topic, payload))

    def _periodic(self) -> None:
        now = time.monotonic()
        if now - self._last_stats >= STATS_EVERY_S:
            self._save_stats()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.info("ingest %s: %s", self.worker_id, self.counters.summary())

    def _save_stats(self, force: bool = False) -> None:
        self._last_stats = time.monotonic()
        self.counters.queue_depth = self.inbox.qsize()
        try:
            conn = self.writer.conn if self.writer.conn is not None else self.writer.open()
            save_counters(conn, self.worker_id, self.counters)
        except (*DatabaseUnavailable, ConfigError) as exc:
            self.writer.close()
            if force:
                log.warning("could not save ingest counters: %s", exc)


def run_worker(settings: Settings, stop_event: Any, *, index: int = 0, protocol: str = "auto") -> None:
    """Run one ingest worker until ``stop_event`` is set, then flush, ack and return."""
    memtrace.start_from_env(f"ingest-worker-{index}")
    IngestWorker(settings, stop_event, index=index, protocol=protocol).run()


def _child(settings: Settings, index: int, log_level: str) -> None:
    """One worker process of ``--workers N``: stops (flush, ack) on the supervisor's SIGTERM."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s ingest[{index}] %(levelname)s %(message)s")
    stop = threading.Event()  # set from a signal handler: never a multiprocessing lock there
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into a SIGTERM to each worker
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_worker(settings, stop, index=index)


def run_workers(settings: Settings, n: int) -> None:
    """Run N worker processes splitting the stream; SIGTERM/SIGINT stop them cleanly.

    The N workers take one partition each (``ingest_partition`` i/N, plain subscriptions that survive a
    Mosquitto restart), unless ``ingest_shared`` asks for a ``$share`` subscription.
    """
    _require(settings)
    if n < 1:
        raise ConfigError("--workers", "must be at least 1")
    if n > 1 and settings.ingest_partition:
        raise ConfigError("SITEPULSE_INGEST_PARTITION", "is for separately started workers; --workers N sets it")
    if settings.ingest_shared and settings.ingest_partition:
        raise ConfigError("SITEPULSE_INGEST_PARTITION", "and SITEPULSE_INGEST_SHARED exclude each other")
    if settings.ingest_amqp_url is not None:
        # one quorum queue per worker; declared before any worker consumes so nothing routes to no queue
        own = parse_partitions(settings.ingest_partition) if settings.ingest_partition else ()
        queues = n if n > 1 else own[0].count if own else settings.ingest_amqp_queues
        settings = settings.model_copy(update={"ingest_amqp_queues": queues})
        amqp_setup(settings.ingest_amqp_url.get_secret_value(), queues)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if n == 1:
            run_worker(settings, stop)
        else:
            _supervise(settings, n, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _supervise(settings: Settings, n: int, stop: threading.Event) -> None:
    """Run N worker processes under the kernel's supervisor (restarted if one dies) until ``stop`` is set."""
    supervisor = Supervisor(stopping=stop, grace_s=STOP_GRACE_S + 10)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    for index in range(n):
        own = settings if settings.ingest_shared or settings.ingest_amqp_url else settings.model_copy(
            update={"ingest_partition": f"{index}/{n}"})
        supervisor.add_function(f"ingest worker {index}", _child, own, index, level)
    supervisor.run()
