"""Fault-injection harness: real Mosquitto, real PostgreSQL, SitePulse roles as subprocesses.

A scenario publishes one deterministic hour of the simulated quarry (11 machines at 1 Hz, the
simulator's default network faults: dropouts uploaded later as arrays, duplicates, reordering,
malformed and wrongly typed samples) with a QoS 1 publisher, breaks something in the middle, and
then checks, against a clean reference processed in one go from the same samples:

- telemetry: every valid sample stored once with the same values, every bad one in ``ingest_rejects``;
- derived tables of ``positioning`` and ``weight-loading``: the same rows (increment tables compared as
  sums per key), so a row missing is *lost* and a row too many is *double-counted*.

Used by ``tests/reliability/test_faults.py`` and ``benchmarks/soak.py``. Servers live in
``tempfile.mkdtemp`` directories outside pytest's tmp tree (the embedded PostgreSQL runs as another
user, and pytest resets the permissions of its tmp tree when other sessions start).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from ingest.contract import Decoded, Decoder
from ingest.reader import Watermark
from ingest.writer import TelemetryWriter
from microservices.discovery import discover_services
from microservices.runner import ServiceHost
from registry.enablement import set_enablement
from simulators.engine import simulate
from simulators.faults import parse_faults
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade
from sitepulse.recording import Message
from sitepulse.sitefile import parse_site
from sitepulse.sites import save_site

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "simulators" / "sites" / "demo_quarry.yaml"
SITE_ID = "rel"
SERVICES = ("positioning", "weight-loading")
SEED = 7
REPORT = ROOT / "artifacts" / "reliability.json"
# Tables whose rows are increments (several rows per key may exist): compared as sums per key.
INCREMENT_TABLES = {"positioning.activity", "weight_loading.activity"}


# --- the telemetry stream ------------------------------------------------------------------------

@dataclass(frozen=True)
class Stream:
    """Messages in publish order, and what ingest must make of them."""

    messages: tuple[Message, ...]
    sample_keys: frozenset[tuple[str, str, int]]  # (machine_id, ts isoformat, seq) of every valid sample
    rejects: frozenset[str]  # digests of distinct rejects (topic, payload, reason), as ingest stores them
    samples_in: int  # samples published (array items counted one by one, duplicates included)
    prefix_items: tuple[int, ...]  # distinct stored+rejected items after the first k telemetry messages

    @property
    def telemetry(self) -> list[Message]:
        return [m for m in self.messages if m.kind == "telemetry"]

    @property
    def expected_items(self) -> int:
        return len(self.sample_keys) + len(self.rejects)


@functools.cache
def site_config() -> Any:
    return parse_site(SITE_FILE.read_bytes(), source=str(SITE_FILE))


@functools.cache
def simulated_messages(duration_s: float = 3600.0, seed: int = SEED) -> tuple[Message, ...]:
    return tuple(simulate(site_config(), site_id=SITE_ID, duration_s=duration_s, seed=seed,
                          faults=parse_faults("default")))


def _reject_digest(topic: str, payload: bytes, reason: str) -> str:
    return hashlib.sha256(b"\0".join([topic.encode(), payload, reason.encode()])).hexdigest()


def analyse(messages: Sequence[Message]) -> Stream:
    """Decode every message the way ingest does, to know what must be stored and rejected."""
    decoder = Decoder()
    keys: set[tuple[str, str, int]] = set()
    rejects: set[str] = set()
    prefix: list[int] = [0]
    samples_in = 0
    received = datetime.now(UTC)
    for message in messages:
        if message.kind != "telemetry":
            continue
        out = Decoded()
        decoder.decode_into(out, message.topic, message.payload, received)
        samples_in += len(out.rows) + len(out.rejects)
        for row in out.rows:
            keys.add((row[1], row[2].isoformat(), row[3]))
        for reject in out.rejects:
            rejects.add(_reject_digest(reject.topic, reject.payload, reject.reason))
        prefix.append(len(keys) + len(rejects))
    return Stream(tuple(messages), frozenset(keys), frozenset(rejects), samples_in, tuple(prefix))


def offline_device_order(messages: Sequence[Message], machine_id: str, chunk: int = 60) -> list[Message]:
    """The same samples, but ``machine_id`` was offline all along: its samples come last as arrays.

    Parsable payloads are flattened and re-sent in chunks of ``chunk`` samples (the way a device
    uploads its buffer); unparsable ones are sent as they were, after the backlog.
    """
    marker = f"/machines/{machine_id}/telemetry"
    live = [m for m in messages if not (m.kind == "telemetry" and m.topic.endswith(marker))]
    held = [m for m in messages if m.kind == "telemetry" and m.topic.endswith(marker)]
    samples: list[Any] = []
    broken: list[Message] = []
    for m in held:
        try:
            value = orjson.loads(m.payload)
        except orjson.JSONDecodeError:
            broken.append(m)
            continue
        samples.extend(value if isinstance(value, list) else [value])
    topic = held[0].topic
    last_t = max(m.t for m in messages)
    backlog = [Message(last_t, topic, orjson.dumps(samples[i:i + chunk]), False, "telemetry", True)
               for i in range(0, len(samples), chunk)]
    return live + backlog + broken


# --- servers and processes -----------------------------------------------------------------------

def start_postgres() -> tuple[EmbeddedPostgres, Path]:
    root = Path(tempfile.mkdtemp(prefix="sitepulse-rel-pg-"))
    server = EmbeddedPostgres(root / "data", fast_unsafe=True)
    server.start()
    return server, root


def stop_postgres(server: EmbeddedPostgres, root: Path) -> None:
    server.destroy()
    shutil.rmtree(root, ignore_errors=True)


def prepare_database(server: EmbeddedPostgres, name: str, services: Sequence[str] = SERVICES) -> str:
    """A fresh migrated database with the quarry loaded and ``services`` (default: both) enabled."""
    url = server.fresh_database(name)
    found = discover_services(",".join(services))
    with psycopg.connect(url, autocommit=True) as conn:
        upgrade(conn)
        save_site(conn, SITE_ID, site_config())
        for service in services:
            set_enablement(conn, found, SITE_ID, service, enabled=True)
    return url


def child_env(database_url: str, mqtt_url: str, workdir: Path, services: Sequence[str] = SERVICES,
              **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEPULSE_")}
    config = workdir / "none.toml"
    config.write_text("")
    env.update({
        "SITEPULSE_DATABASE_URL": database_url,
        "SITEPULSE_MQTT_URL": mqtt_url,
        "SITEPULSE_DATA_DIR": str(workdir / "data"),
        "SITEPULSE_CONFIG_FILE": str(config),
        "SITEPULSE_LOAD_SERVICES": ",".join(services),
        "SITEPULSE_INGEST_BATCH_MS": "100",
        "SITEPULSE_LOG_LEVEL": "INFO",
        **extra,
    })
    return env


class Role:
    """One SitePulse role as a subprocess, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, *self.args], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
        log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, children included (a supervisor's workers die with it as in a crash)."""
        if self.process is None:
            return
        for child in self.children():
            child.kill()
        self.process.kill()
        self.process.wait(10)

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def ingest_workers(self) -> list[psutil.Process]:
        """The worker processes of an ingest supervisor (a killed one may linger as a zombie for a moment)."""
        found = []
        for child in self.children():
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:
                pass
        return found

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def ingest_role(env: dict[str, str], workdir: Path, workers: int = 1) -> Role:
    return Role("ingest", ["-m", "ingest", "--workers", str(workers)], env, workdir)


def runner_role(env: dict[str, str], workdir: Path) -> Role:
    return Role("runner", ["-m", "sitepulse", "run-services"], env, workdir)


class TcpProxy:
    """A loopback TCP proxy that can cut every connection and refuse new ones (a network partition)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.settimeout(0.2)
        self.connected = threading.Event()
        self.cut = threading.Event()
        self.closing = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, name="proxy", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut.is_set():
                client.close()  # partitioned: the connection dies at once
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
            self.connected.set()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def partition(self) -> None:
        """Drop every connection (both directions) and refuse new ones until ``heal``."""
        self.cut.set()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def heal(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self.closing.set()
        self.partition()
        self.listener.close()
        self.thread.join(2)


# --- the device side: a paced QoS 1 publisher ---------------------------------------------------

class FleetPublisher:
    """Publishes messages QoS 1 at about ``rate`` per second with at most ``window`` unacknowledged.

    Behaves like devices that buffer: while the broker is away paho keeps the messages and sends
    them (again, with DUP) after reconnecting; ``acked`` counts the broker's PUBACKs.
    """

    def __init__(self, host: str, port: int, rate: float = 2500, window: int = 2000) -> None:
        self.rate, self.window = rate, window
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{os.getpid()}-{time.time_ns()}")
        self.client.max_inflight_messages_set(window)
        self.client.reconnect_delay_set(0.2, 2)
        self.client.on_publish = self._on_publish
        self.lock = threading.Lock()
        self.mid_index: dict[int, int] = {}
        self.early: set[int] = set()
        self.acked_set: set[int] = set()
        self.acked_prefix = 0  # every telemetry message below this index is acknowledged
        self.sent = 0
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # Called by paho's network thread with paho's lock held: never call paho under self.lock.
        with self.lock:
            index = self.mid_index.pop(mid, None)
            if index is None:
                self.early.add(mid)  # PUBACK arrived before publish() returned its mid
                return
            self._acked(index)

    def _acked(self, index: int) -> None:
        self.acked_set.add(index)
        while self.acked_prefix in self.acked_set:
            self.acked_set.discard(self.acked_prefix)
            self.acked_prefix += 1

    @property
    def acked(self) -> int:
        with self.lock:
            return self.acked_prefix + len(self.acked_set)

    def publish_retained(self, messages: Iterable[Message], timeout: float = 30) -> None:
        infos = [self.client.publish(m.topic, m.payload, qos=1, retain=True) for m in messages if m.retain]
        for info in infos:
            info.wait_for_publish(timeout)

    def start(self, telemetry: Sequence[Message]) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(telemetry,), name="fleet", daemon=True)
        thread.start()
        return thread

    def _run(self, telemetry: Sequence[Message]) -> None:
        try:
            started = time.monotonic()
            for index, message in enumerate(telemetry):
                while self.sent - self.acked >= self.window:
                    time.sleep(0.005)
                ahead = started + index / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                info = self.client.publish(message.topic, message.payload, qos=1)
                with self.lock:
                    if info.mid in self.early:
                        self.early.discard(info.mid)
                        self._acked(index)
                    else:
                        self.mid_index[info.mid] = index
                    self.sent += 1
        except BaseException as exc:  # surfaced by wait_all
            self.error = exc
        finally:
            self.done.set()

    def wait_all(self, total: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            if self.done.is_set() and self.acked >= total:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- measuring ----------------------------------------------------------------------------------

def query(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    with psycopg.connect(url, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchall()


def try_scalar(url: str, sql: str, params: Sequence[Any] = ()) -> Any:
    try:
        return query(url, sql, params)[0][0]
    except psycopg.OperationalError:
        return None


def stored_items(url: str) -> int | None:
    return try_scalar(url, "SELECT (SELECT count(*) FROM telemetry) + (SELECT count(*) FROM ingest_rejects)")


def newest_xid(url: str) -> int | None:
    return try_scalar(url, "SELECT max(xid)::text::bigint FROM telemetry")


def services_caught_up(url: str, newest: int | None = None, services: Sequence[str] = SERVICES) -> bool:
    """Every service's checkpoint is past ``newest`` (default: the newest committed telemetry)."""
    try:
        rows = query(url, "SELECT (SELECT max(xid)::text::bigint FROM telemetry),"
                          " (SELECT array_agg(watermark) FROM service_checkpoints WHERE site_id = %s)",
                     (SITE_ID,))
    except psycopg.OperationalError:
        return False
    latest, marks = rows[0]
    newest = latest if newest is None else newest
    if newest is None:
        return True
    marks = [m for m in (marks or []) if m]
    if len(marks) < len(services):
        return False
    return all(Watermark.from_json(m).xmin > newest for m in marks)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def recovery_seconds(url: str, target_items: int, fault_end: float, timeout: float) -> float | None:
    """Seconds from ``fault_end`` until ``target_items`` are stored and every service has processed them."""
    if not wait_for(lambda: (stored_items(url) or 0) >= target_items, timeout):
        return None
    newest = newest_xid(url)
    if not wait_for(lambda: services_caught_up(url, newest), max(1.0, fault_end + timeout - time.monotonic())):
        return None
    return time.monotonic() - fault_end


# --- comparing with the reference ----------------------------------------------------------------

TELEMETRY_DIGEST = (
    "SELECT count(*), md5(coalesce(string_agg(concat_ws('|', machine_id, ts, seq, lat, lon, speed_kmh,"
    " heading_deg, payload_kg, fuel_used_l, engine_hours, engine_on, extra::text), E'\\n'"
    " ORDER BY machine_id, ts, seq), '')) FROM telemetry"
)


def _columns(conn: psycopg.Connection, qualified: str) -> list[tuple[str, str]]:
    schema, table = qualified.split(".", 1)
    return conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s"
        " AND table_name = %s AND column_name NOT IN ('site_id', 'run_seq') ORDER BY ordinal_position",
        (schema, table)).fetchall()


def _canonical(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, datetime):
        return value.isoformat()
    return value if isinstance(value, str | int | bool | type(None)) else str(value)


def derived_rows(url: str) -> dict[str, Counter]:
    """Every derived table of the enabled services as a multiset of rows (increments summed per key)."""
    services = discover_services(",".join(SERVICES))
    out: dict[str, Counter] = {}
    with psycopg.connect(url) as conn:
        for service in services.values():
            for qualified in service.tables:
                columns = _columns(conn, qualified)
                numeric = [c for c, t in columns if t in ("bigint", "integer", "double precision")]
                if qualified in INCREMENT_TABLES:
                    keys = [c for c, _ in columns if c not in numeric]
                    select = ", ".join([*(f'"{k}"' for k in keys), *(f'sum("{n}")' for n in numeric)])
                    sql = f"SELECT {select} FROM {qualified} WHERE site_id = %s GROUP BY {', '.join(keys)}"
                else:
                    sql = f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c, _ in columns)} FROM {qualified}" \
                          " WHERE site_id = %s"
                rows = conn.execute(sql, (SITE_ID,)).fetchall()
                out[qualified] = Counter(tuple(_canonical(v) for v in row) for row in rows)
    return out


@dataclass
class Reference:
    """What a clean run makes of a stream: telemetry digest, rejects and derived tables."""

    telemetry: tuple[int, str]
    rejects: int
    derived: dict[str, Counter]
    seconds: float


def build_reference(server: EmbeddedPostgres, stream: Stream, name: str = "reference") -> Reference:
    """Write the stream's decoded samples in one go and run each service over them in-process."""
    started = time.monotonic()
    url = prepare_database(server, name)
    decoder = Decoder()
    batch = Decoded()
    received = datetime.now(UTC)
    for message in stream.messages:
        decoder.decode_into(batch, message.topic, message.payload, received)
    with TelemetryWriter(url) as writer:
        writer.write(batch)
    services = discover_services(",".join(SERVICES))
    with psycopg.connect(url, autocommit=True) as conn:
        for service in services.values():
            ServiceHost(service).catch_up(conn)
    telemetry = query(url, TELEMETRY_DIGEST)[0]
    rejects = query(url, "SELECT count(*) FROM ingest_rejects")[0][0]
    return Reference((telemetry[0], telemetry[1]), rejects, derived_rows(url), time.monotonic() - started)


@dataclass
class Outcome:
    scenario: str
    messages_in: int
    samples_in: int
    stored: int
    rejected: int
    lost: int
    duplicated_telemetry: int
    derived_rows: int
    derived_missing: int
    derived_duplicated: int
    telemetry_identical: bool
    recovery_s: float | None
    seconds: float
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated_telemetry == 0 and self.derived_missing == 0
                and self.derived_duplicated == 0 and self.telemetry_identical and self.recovery_s is not None)


def compare(scenario: str, url: str, stream: Stream, reference: Reference, messages_in: int,
            recovery_s: float | None, seconds: float, notes: str = "") -> Outcome:
    count, digest = query(url, TELEMETRY_DIGEST)[0]
    distinct = query(url, "SELECT count(*) FROM (SELECT DISTINCT machine_id, ts, seq FROM telemetry) d")[0][0]
    rejected = query(url, "SELECT count(*) FROM ingest_rejects")[0][0]
    derived = derived_rows(url)
    missing = duplicated = total = 0
    per_table: dict[str, dict[str, int]] = {}
    for table, expected in reference.derived.items():
        got = derived.get(table, Counter())
        lost_rows = sum((expected - got).values())
        extra_rows = sum((got - expected).values())
        per_table[table] = {"reference": sum(expected.values()), "run": sum(got.values()),
                            "missing": lost_rows, "extra": extra_rows}
        missing += lost_rows
        duplicated += extra_rows
        total += sum(got.values())
    expected_rows = len(stream.sample_keys)
    return Outcome(
        scenario=scenario, messages_in=messages_in, samples_in=stream.samples_in, stored=count,
        rejected=rejected, lost=(expected_rows - distinct) + (len(stream.rejects) - rejected),
        duplicated_telemetry=count - distinct, derived_rows=total, derived_missing=missing,
        derived_duplicated=duplicated, telemetry_identical=(count, digest) == reference.telemetry,
        recovery_s=None if recovery_s is None else round(recovery_s, 1), seconds=round(seconds, 1), notes=notes,
        details={"derived": per_table, "expected_rows": expected_rows, "expected_rejects": len(stream.rejects)},
    )


def write_report(outcome: Outcome | dict[str, Any], section: str = "scenarios", path: Path = REPORT) -> None:
    """Merge one result into ``artifacts/reliability.json`` (rendered by scripts in docs/RELIABILITY.md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    entry = outcome if isinstance(outcome, dict) else {**outcome.__dict__, "ok": outcome.ok()}
    key = entry.get("scenario") or entry.get("name")
    data.setdefault(section, {})[key] = {**entry, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
