"""One ingest worker (MQTT -> decode -> batch -> commit -> ack) and a supervisor for N of them."""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

from tenacity import RetryCallState

from ingest.amqp import AmqpConsumer
from ingest.amqp import setup as amqp_setup
from ingest.consumer import Inbound, MqttConsumer
from ingest.contract import Decoded, Decoder
from ingest.front import Front, load_front
from ingest.metrics import IngestCounters, save_counters, worker_identity
from ingest.topics import assigned_sites, parse_partitions
from ingest.writer import DatabaseUnavailable, TelemetryWriter, Turn, WriteResult, prepare
from sitepulse import memtrace
from sitepulse.errors import ConfigError
from sitepulse.retry import retrying
from sitepulse.settings import Settings
from sitepulse.supervisor import Supervisor

log = logging.getLogger(__name__)

STATS_EVERY_S = 5.0
LOG_EVERY_S = 30.0
STOP_GRACE_S = 10.0  # how long a stopping worker keeps retrying an unreachable database
RETRY_MAX_S = 5.0
SHARE_GROUP = "sitepulse-ingest"
COMMITTERS = 2  # database connections per worker, writing consecutive batches side by side


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
        self.front: Front | None = None  # the decoder layer when SITEPULSE_DECODERS_FILE names routes
        if settings.decoders_file is not None:
            self.front = load_front(settings, self.decoder, publish=self._publish)
            if self.front.topic_filters and settings.ingest_amqp_url is not None:
                raise ConfigError("SITEPULSE_DECODERS_FILE", "has MQTT routes, which the RabbitMQ ingest mode"
                                  " (SITEPULSE_INGEST_AMQP_URL) does not carry; use MQTT ingest for them")
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.writer = TelemetryWriter(database_url)  # also the connection stats are saved on
        self.writers = [self.writer, *(TelemetryWriter(database_url) for _ in range(COMMITTERS - 1))]
        partitions = parse_partitions(settings.ingest_partition) if settings.ingest_partition else ()
        self.consumer: MqttConsumer | AmqpConsumer
        if settings.ingest_amqp_url is not None:  # mqtt_url is the AMQP URL here
            if settings.ingest_sites:
                raise ConfigError("SITEPULSE_INGEST_SITES", "is for MQTT ingest; RabbitMQ queues split the stream")
            # a separately started worker i/N consumes queue i of N; under --workers N the index is its own
            queue_index, queues = (partitions[0].index, partitions[0].count) if partitions else (
                index, settings.ingest_amqp_queues)
            self.consumer = AmqpConsumer(mqtt_url, queue_index, queues, self.inbox)
        else:
            sites, other_sites = None, ()
            if settings.ingest_sites:  # the broker routes sites to workers: no partition filtering here
                try:
                    sites = assigned_sites(settings.ingest_sites, partitions)
                    other_sites = tuple(s for s in assigned_sites(settings.ingest_sites, ()) if s not in sites)
                except ValueError as exc:
                    raise ConfigError("SITEPULSE_INGEST_SITES", str(exc)) from None
                partitions = ()
            self.consumer = MqttConsumer(mqtt_url, f"{settings.ingest_client_id}-{index}", self.inbox,
                                         protocol=protocol, share_group=SHARE_GROUP if settings.ingest_shared else None,
                                         partitions=partitions,
                                         extra_filters=self.front.topic_filters if self.front else (),
                                         sites=sites, other_sites=other_sites)
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
            for writer in self.writers:
                writer.close()

    def _pipeline(self) -> None:
        """Decode in this thread while committer threads write the previous batches.

        ``COMMITTERS`` threads, each with its own database connection, take batches from a hand-off
        of one, so PostgreSQL copies one batch while the previous one commits (one connection left
        the server idle between them); at most COMMITTERS + 2 batches are in memory. Acks still go
        out in arrival order: a batch is acknowledged (and counted) only after every earlier batch,
        which the AMQP mode's multiple-ack needs too. Stats are saved by the first committer on its
        own connection.
        """
        handoff: queue.Queue[tuple[int, Decoded, list[Inbound]] | None] = queue.Queue(maxsize=1)
        failure: list[BaseException] = []
        gave_up = threading.Event()  # stopping with the database down: leave the rest unacked
        turn = threading.Condition()
        next_ack = [0]  # sequence number of the batch whose turn it is to be acknowledged

        def turn_of(seq: int) -> Turn:
            def wait(timeout: float | None) -> bool:
                """Until batch ``seq`` is next to commit (or a committer failed); False if timed out."""
                with turn:
                    return bool(turn.wait_for(lambda: next_ack[0] == seq or failure, timeout))
            return wait

        def commit_loop(writer: TelemetryWriter, first: bool) -> None:
            try:
                while True:
                    try:
                        item = handoff.get(timeout=0.25)
                    except queue.Empty:
                        if first:
                            self._periodic()
                        continue
                    if item is None:
                        return
                    seq, batch, pending = item
                    my_turn = turn_of(seq)
                    result = None if gave_up.is_set() else self._store(writer, batch, pending, my_turn)
                    with turn:
                        my_turn(None)
                        if result is None:
                            gave_up.set()
                        elif not gave_up.is_set():
                            self._count(batch, pending, result, self.consumer.ack(pending))
                        next_ack[0] = seq + 1
                        turn.notify_all()
                    if first:
                        self._periodic()
            except BaseException as exc:  # surfaced in the decoding thread
                with turn:
                    failure.append(exc)
                    gave_up.set()
                    turn.notify_all()

        committers = [
            threading.Thread(target=commit_loop, args=(writer, k == 0), name=f"ingest-commit-{self.worker_id}-{k}",
                             daemon=True)
            for k, writer in enumerate(self.writers)
        ]
        for committer in committers:
            committer.start()

        def hand_off(item: tuple[int, Decoded, list[Inbound]] | None) -> bool:
            while any(c.is_alive() for c in committers):
                try:
                    handoff.put(item, timeout=0.25)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            self._decode_loop(hand_off, gave_up)
        finally:
            for _ in committers:
                hand_off(None)
            for committer in committers:
                committer.join()
        if failure:
            raise failure[0]

    def _decode_loop(self, hand_off: Any, gave_up: threading.Event) -> None:
        batch = Decoded()
        pending: list[Inbound] = []
        decode_into, get = (self.front or self.decoder).decode_into, self.inbox.get
        fromtimestamp = datetime.fromtimestamp
        seq = 0
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
            batch.finish()  # column checks and the COPY stream here, so the committer threads only write
            prepare(batch)
            if not hand_off((seq, batch, pending)):
                return
            seq += 1
            batch = Decoded()
            pending = []

    def _store(self, writer: TelemetryWriter, batch: Decoded, pending: list[Inbound], turn: Turn) -> WriteResult | None:
        """Write with retries (sitepulse/retry.py). None if stopping while the database is down (the batch stays
        unacked: the broker re-delivers it)."""
        if not (len(batch.block()) or batch.rejects or batch.births or batch.statuses):
            return WriteResult()  # only other partitions' messages: nothing to store, acknowledge them in order
        down = (*DatabaseUnavailable, ConfigError)  # ConfigError: reconnect refused
        stopping_since: list[float] = []

        def stopped_long_enough(state: RetryCallState) -> bool:
            if not self.stop_event.is_set():
                return False
            stopping_since[:] = stopping_since or [time.monotonic()]
            return time.monotonic() - stopping_since[0] > STOP_GRACE_S

        def say_why(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            text = str(exc).strip()
            log.warning("database unavailable (%s); not acking %d messages, retrying in %.1fs",
                        text.splitlines()[-1] if text else type(exc).__name__, len(pending), state.upcoming_sleep)

        try:
            for attempt in retrying(down, first_s=0.2, max_s=RETRY_MAX_S, give_up=stopped_long_enough,
                                    before_sleep=say_why):
                with attempt:
                    try:
                        return writer.write(batch, turn)
                    except down:
                        self.counters.db_errors += 1
                        writer.close()
                        raise
        except down:
            log.warning("stopping with %d messages not stored; the broker re-delivers them", len(pending))
        return None

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
