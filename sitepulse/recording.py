"""The telemetry file: MQTT messages recorded one per line (JSON) or per row (Parquet), replayable byte for byte.

``sitepulse simulate --out`` writes it, ``replay`` and ``site suggest-zones --telemetry`` read it; the format is a
kernel contract so a reader need not import the simulator. A JSON-lines file holds one line per message,
``{"t": <send time, s since start>, "topic": ..., "retain": bool, "payload": <the exact JSON>}``,
where ``payload`` is the JSON text itself for JSON payloads and a string for anything else
(malformed payloads, ``online``/``offline`` status), so replay publishes the same bytes.
Parquet files hold the same columns with the payload as text plus an ``is_json`` flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import orjson

from sitepulse.errors import SitePulseError


class Message(NamedTuple):
    """One MQTT message: send time (true seconds since start), topic, payload bytes and flags."""

    t: float
    topic: str
    payload: bytes
    retain: bool
    kind: str  # "telemetry" | "birth" | "status"
    is_json: bool


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
