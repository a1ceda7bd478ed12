"""Where simulated messages go: a real MQTT broker (paced, or faster with a speedup) or files.

A JSON-lines telemetry file holds one line per MQTT message,
``{"t": <send time, s since start>, "topic": ..., "retain": bool, "payload": <the exact JSON>}``,
where ``payload`` is the JSON text itself for JSON payloads and a string for anything else
(malformed payloads, ``online``/``offline`` status), so replay publishes the same bytes.
Parquet files hold the same columns with the payload as text plus an ``is_json`` flag.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt

from simulators.engine import Message
from sitepulse.errors import SitePulseError

MAX_OUTSTANDING = 5_000  # paho stalls near 65,535 un-acked QoS 1 messages (ARCHITECTURE.md)


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """Host and port of an ``mqtt://host:port`` URL (tcp:// accepted; default port 1883)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise SitePulseError(f"MQTT URL {url!r} is not like mqtt://host:1883")
    try:
        port = parts.port or 1883
    except ValueError:
        raise SitePulseError(f"MQTT URL {url!r} has a bad port") from None
    return parts.hostname, port


def connect(url: str, client_id: str = "", timeout: float = 10.0) -> tuple[mqtt.Client, dict]:
    """A connected paho 2.x client with its network loop running, plus a live ack counter."""
    host, port = parse_mqtt_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    state = {"acked": 0, "connected": threading.Event(), "rc": None}

    def on_connect(_c, _u, _flags, reason_code, _props):
        state["rc"] = reason_code
        state["connected"].set()

    def on_publish(_c, _u, _mid, _rc, _props):
        state["acked"] += 1

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise SitePulseError(f"cannot reach the MQTT broker at {url} ({exc.strerror or exc})") from None
    client.loop_start()
    if not state["connected"].wait(timeout) or (state["rc"] is not None and state["rc"].is_failure):
        client.loop_stop()
        raise SitePulseError(f"MQTT broker at {url} did not accept the connection ({state['rc']})")
    return client, state


def wait_acked(state: dict, sent: int, timeout: float = 60.0) -> bool:
    """Wait until the broker acknowledged ``sent`` messages (QoS 1 PUBACKs)."""
    deadline = time.monotonic() + timeout
    while state["acked"] < sent:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


@dataclass
class PublishStats:
    """What a publisher did."""

    messages: int
    seconds: float
    stopped: bool = False

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def publish_live(messages: Iterable[Message], mqtt_url: str, speedup: float = 1.0,
                 stop_event: threading.Event | None = None, client_id: str = "",
                 on_message: Callable[[Message], None] | None = None) -> PublishStats:
    """Publish messages with QoS 1, paced by their send time / speedup (0 = as fast as possible).

    Runs until the messages end or ``stop_event`` is set (then every machine seen is marked
    ``offline``); safe to run in a thread during ``sitepulse demo``.
    """
    stop_event = stop_event or threading.Event()
    client, state = connect(mqtt_url, client_id)
    sent = 0
    status_topics: dict[str, None] = {}
    wall0 = time.monotonic()
    stopped = False
    try:
        for msg in messages:
            if speedup and speedup > 0:
                delay = wall0 + msg.t / speedup - time.monotonic()
                if delay > 0 and stop_event.wait(delay):
                    stopped = True
                    break
            if stop_event.is_set():
                stopped = True
                break
            client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
            sent += 1
            if msg.kind == "status":
                status_topics[msg.topic] = None
            if on_message is not None:
                on_message(msg)
            if sent - state["acked"] > MAX_OUTSTANDING:
                wait_acked(state, sent - MAX_OUTSTANDING // 5)
        if stopped:
            for topic in status_topics:
                client.publish(topic, b"offline", qos=1, retain=True)
                sent += 1
        if not wait_acked(state, sent):
            raise SitePulseError(f"MQTT broker at {mqtt_url} stopped acknowledging messages")
    finally:
        client.disconnect()
        client.loop_stop()
    return PublishStats(sent, time.monotonic() - wall0, stopped)


def publish_backlog(pairs: Iterable[tuple[str, bytes]], mqtt_url: str, client_id: str = "") -> PublishStats:
    """Publish ``(topic, payload)`` pairs with QoS 1 as fast as the broker acknowledges them: the backlog a
    benchmark or a fault test has a worker drain (a generator may act between messages, e.g. kill a worker)."""
    client, state = connect(mqtt_url, client_id)
    sent = 0
    started = time.monotonic()
    try:
        for topic, payload in pairs:
            client.publish(topic, payload, qos=1)
            sent += 1
            if sent - state["acked"] > MAX_OUTSTANDING:
                wait_acked(state, sent - MAX_OUTSTANDING // 5)
        if not wait_acked(state, sent):
            raise SitePulseError(f"MQTT broker at {mqtt_url} stopped acknowledging messages")
    finally:
        client.disconnect()
        client.loop_stop()
    return PublishStats(sent, time.monotonic() - started)


def _jsonl_line(msg: Message) -> bytes:
    payload = msg.payload if msg.is_json else orjson.dumps(msg.payload.decode("utf-8"))
    return b"".join((b'{"t":', orjson.dumps(round(msg.t, 6)), b',"topic":', orjson.dumps(msg.topic),
                     b',"retain":', b"true" if msg.retain else b"false", b',"payload":', payload, b"}\n"))


def write_jsonl(messages: Iterable[Message], path: str | Path) -> int:
    """Write messages as JSON lines; returns how many."""
    n = 0
    with open(path, "wb") as fh:
        buf: list[bytes] = []
        for msg in messages:
            buf.append(_jsonl_line(msg))
            n += 1
            if len(buf) >= 5000:
                fh.write(b"".join(buf))
                buf = []
        fh.write(b"".join(buf))
    return n


def write_parquet(messages: Iterable[Message], path: str | Path, batch: int = 50_000) -> int:
    """Write messages to Parquet (t, topic, retain, kind, is_json, payload text); returns how many."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("t", pa.float64()), ("topic", pa.string()), ("retain", pa.bool_()),
                        ("kind", pa.string()), ("is_json", pa.bool_()), ("payload", pa.string())])
    n = 0
    cols: dict[str, list] = {name: [] for name in schema.names}
    with pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
        for msg in messages:
            cols["t"].append(msg.t)
            cols["topic"].append(msg.topic)
            cols["retain"].append(msg.retain)
            cols["kind"].append(msg.kind)
            cols["is_json"].append(msg.is_json)
            cols["payload"].append(msg.payload.decode("utf-8"))
            n += 1
            if len(cols["t"]) >= batch:
                writer.write_table(pa.table(cols, schema=schema))
                cols = {name: [] for name in schema.names}
        if cols["t"] or n == 0:
            writer.write_table(pa.table(cols, schema=schema))
    return n


def write_messages(messages: Iterable[Message], path: str | Path) -> int:
    """Write to ``.jsonl`` or ``.parquet`` by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return write_parquet(messages, path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return write_jsonl(messages, path)
    raise SitePulseError(f"--out {path}: use a .jsonl or .parquet file name")


def read_messages(path: str | Path) -> Iterator[Message]:
    """Read a telemetry file written by ``write_messages`` back into Messages (exact payload bytes)."""
    path = Path(path)
    if not path.exists():
        raise SitePulseError(f"{path}: no such telemetry file")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(str(path))
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise SitePulseError(f"{path}: not a SitePulse Parquet telemetry file ({exc})") from None
        for rb in pf.iter_batches():
            d = rb.to_pydict()
            for t, topic, retain, kind, is_json, payload in zip(d["t"], d["topic"], d["retain"], d["kind"],
                                                                d["is_json"], d["payload"], strict=True):
                yield Message(t, topic, payload.encode("utf-8"), retain, kind, is_json)
        return
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
                payload = rec["payload"]
                topic = rec["topic"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise SitePulseError(f"{path}:{lineno}: not a SitePulse telemetry line") from None
            is_json = not isinstance(payload, str)
            data = orjson.dumps(payload) if is_json else payload.encode("utf-8")
            kind = topic.rsplit("/", 1)[-1] if "/" in topic else "telemetry"
            retain = bool(rec.get("retain", False))
            yield Message(float(rec.get("t", 0.0)), topic, data, retain, kind, is_json)
