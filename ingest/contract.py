"""The telemetry contract (MQTT contract v1) as code: the one place samples are decoded and judged.

A telemetry payload is UTF-8 JSON: one sample object or a non-empty array of them. Only
``ts`` is required (RFC 3339 with an offset, or epoch seconds); ids come from the topic, and a
payload ``site_id``/``machine_id`` that disagrees with the topic is a reject. Known fields:

==============  ===========================  =======================================
field           type                         rule
==============  ===========================  =======================================
ts              RFC 3339 str | epoch number  2000-01-01 <= ts <= now + 1 day
seq             int                          0 <= seq < 2**63 (absent is stored as -1)
lat             number                       -90..90
lon             number                       -180..180
speed_kmh       number                       finite
heading_deg     number                       finite
payload_kg      number                       >= 0; a negative reading is a load cell's sentinel: absent
fuel_used_l     number                       >= 0 (cumulative counter)
engine_hours    number                       >= 0 (cumulative counter)
engine_on       bool
==============  ===========================  =======================================

A negative ``payload_kg`` (load cells send -99 or another negative value for "no valid weight") is stored as
absent and kept in ``extra`` as ``payload_kg_invalid``: the sample's position and speed are good, and rejecting
the whole sample for its weight lost them (about seven such readings an hour on a real truck).

Numbers are stored on a binary grid at or finer than the resolution of the matching SAE J1939
parameter (``RESOLUTION``). ``null`` means absent; unknown fields are kept in ``extra`` (jsonb).
Each failure is one readable sentence naming the field; in an array the good samples are kept and each bad one
is rejected on its own ("sample 3: lat 91.2 is outside -90..90", index from 0).

The checks are explicit and cheap (no per-sample model) because this runs for every sample.
Birth messages (rare) are checked with a pydantic model; status is ``online`` | ``offline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from time import time
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.columns import (
    PG_EPOCH_UNIX,
    RowBlock,
    concat,
    empty_block,
    epoch_to_micros,
    rfc3339_utc_to_micros,
    snap,
    snap_columns,
    to_micros,
)
from ingest.fields import FLOAT_FIELDS, MEASURED_FIELDS, SAMPLE_FIELDS  # noqa: F401 (re-exported)
from ingest.topics import TopicIds, parse_topic

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
_MIN_DT = datetime(2000, 1, 1, tzinfo=UTC)
MIN_TS = _MIN_DT.timestamp()
MAX_FUTURE_S = 86_400.0
MAX_SEQ = 2**63 - 1
MACHINE_KINDS = ("hauler", "loader", "excavator", "dozer", "other")

# The stored resolution of each float column, a power of two at or finer than the SAE J1939 parameter
# for the same quantity: latitude/longitude 1e-7 deg (SPN 584/585; 2**-24 deg is at most 6.7 mm),
# wheel-based speed 1/256 km/h (SPN 84), compass bearing 1/128 deg (SPN 165), axle weight 0.5 kg
# (SPN 582), high-resolution total fuel used 0.001 L (SPN 5054), engine hours 0.05 h (SPN 247; 2**-12 h
# is 0.9 s). Why: a double on a binary grid ends in zero bits, which TimescaleDB's Gorilla compression
# leaves out; noisy decimals filled every bit (the simulator's quarry: 6.7x compressed, 17x on the grid).
RESOLUTION: dict[str, float] = {
    "lat": 2.0**-24,
    "lon": 2.0**-24,
    "speed_kmh": 2.0**-8,
    "heading_deg": 2.0**-7,
    "payload_kg": 2.0**-1,
    "fuel_used_l": 2.0**-10,
    "engine_hours": 2.0**-12,
}
KNOWN_FIELDS = frozenset(
    ["ts", "seq", "engine_on", "site_id", "machine_id", *(name for name, _, _ in FLOAT_FIELDS)]
)
# Columns of a decoded row, in the order the writer copies them.
ROW_COLUMNS = (
    "site_id",
    "machine_id",
    "ts",
    "seq",
    "received_at",
    *(name for name, _, _ in FLOAT_FIELDS),
    "engine_on",
    "extra",
)
ROW_TYPES = (
    "text",
    "text",
    "timestamptz",
    "int8",
    "timestamptz",
    *("float8" for _ in FLOAT_FIELDS),
    "bool",
    "text",
)

_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 64) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(slots=True)
class Reject:
    """Input that broke the contract, with the reason a person reads."""

    received_at: datetime
    topic: str
    payload: bytes
    reason: str
    site_id: str | None = None
    machine_id: str | None = None
    code: str | None = None  # a decoder's short reason class for the metrics; None: the contract's checks


@dataclass(slots=True)
class Birth:
    """A validated birth message: the machine registry row it upserts."""

    site_id: str
    machine_id: str
    kind: str
    model: str
    rated_payload_kg: float | None
    attributes: dict[str, Any]
    received_at: datetime


@dataclass(slots=True)
class Status:
    """A validated status message (online/offline)."""

    site_id: str
    machine_id: str
    status: str
    received_at: datetime


class Decoded:
    """Everything decoded from a run of messages, ready for one database transaction.

    Telemetry samples are kept as parsed until the batch is finished; ``finish`` then checks them
    column by column (numpy) and only the samples that look unusual go through the per-sample
    rules, so a batch becomes a :class:`~ingest.columns.RowBlock` without a Python object per row.
    ``rows``/``rejects``/``sites`` finish first, so readers always see every message decoded so far.
    """

    __slots__ = ("_rejects", "births", "statuses", "_sites", "_samples", "_starts", "_msgs", "_blocks", "_positions")

    def __init__(self) -> None:
        self._rejects: list[Reject] = []
        self.births: list[Birth] = []
        self.statuses: list[Status] = []
        self._sites: set[str] = set()
        self._samples: list[Any] = []
        self._starts: list[int] = []
        self._msgs: list[tuple[str, bytes, str, str, datetime, bool]] = []
        self._blocks: list[RowBlock] = []
        self._positions: dict[int, list[int]] = {}  # message number -> its samples' positions in the payload

    @property
    def sample_count(self) -> int:
        """Samples received so far (stored or not): what the batch size is measured in."""
        return len(self._samples) + sum(len(b) for b in self._blocks)

    def reject(self, reject: Reject) -> None:
        """Record a message-level reject after the samples before it, so rejects keep arrival order."""
        self.finish()
        self._rejects.append(reject)

    def add_samples(
        self, topic: str, payload: bytes, site_id: str, machine_id: str, received_at: datetime, samples: list[dict],
        positions: list[int] | None = None,
    ) -> None:
        """Queue a decoder's normalised samples of one message; they are checked and stored as native ones are.

        A rejected sample of a multi-sample message is recorded as ``sample N: reason`` with the sample itself;
        N is its place in the message, or ``positions[i]`` when the decoder already dropped some readings.
        """
        if samples:
            if positions is not None:
                self._positions[len(self._msgs)] = positions
            self._starts.append(len(self._samples))
            self._msgs.append((topic, payload, site_id, machine_id, received_at,
                               len(samples) > 1 or positions is not None))
            self._samples.extend(samples)

    def finish(self) -> None:
        """Turn the pending samples into a column block (and their rejects)."""
        if self._samples:
            self._blocks.append(_finish(self))
            self._samples, self._starts, self._msgs, self._positions = [], [], [], {}

    def block(self) -> RowBlock:
        """The batch's rows as one column block."""
        self.finish()
        if len(self._blocks) > 1:
            self._blocks = [concat(self._blocks)]
        return self._blocks[0] if self._blocks else empty_block()

    @property
    def rows(self) -> list[tuple]:
        return self.block().rows()

    @property
    def rejects(self) -> list[Reject]:
        self.finish()
        return self._rejects

    @property
    def sites(self) -> set[str]:
        self.finish()
        return self._sites

    def clear(self) -> None:
        self.__init__()


_get = dict.get
_NONE = type(None)


def _column(samples: list, name: str) -> list:
    return list(map(_get, samples, repeat(name)))


def out_of_bounds(values: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """Per value: infinite or outside the field's bounds (NaN is neither: a missing reading); such a sample is
    checked one by one, where it becomes a reject with its reason."""
    with np.errstate(invalid="ignore"):
        bad = np.isinf(values)
        if low is not None:
            bad |= values < low
        if high is not None:
            bad |= values > high
    return bad


def put_checked_row(i: int, row: tuple, ts: np.ndarray, floats: np.ndarray, engine_on: np.ndarray,
                    extra: list[str | None] | None) -> list[str | None] | None:
    """Row ``i`` of the column arrays from ``checked_sample_row``'s tuple (all but the keys and seq); returns
    ``extra``, made the first time a row carries one."""
    ts[i] = to_micros(row[2])
    floats[i] = [np.nan if v is None else v for v in row[5:12]]
    engine_on[i] = -1 if row[12] is None else int(row[12])
    if row[13] is not None:
        if extra is None:
            extra = [None] * len(ts)
        extra[i] = row[13]
    return extra


def _finish(out: Decoded) -> RowBlock:
    """Check the pending samples column-wise; unusual ones go through checked_sample_row one by one."""
    samples, msgs = out._samples, out._msgs
    n = len(samples)
    now = time()
    counts = np.diff(np.array([*out._starts, n], np.int64))
    msg_of = np.repeat(np.arange(len(msgs)), counts)
    keys = sorted({(m[2], m[3]) for m in msgs})
    where = {k: i for i, k in enumerate(keys)}
    key = np.array([where[(m[2], m[3])] for m in msgs], np.int64)[msg_of]
    received = np.array([to_micros(m[4]) for m in msgs], np.int64)[msg_of]
    slow = np.zeros(n, bool)
    if set(map(type, samples)) != {dict}:
        slow |= np.fromiter((type(s) is not dict for s in samples), bool, n)
        samples = [s if type(s) is dict else {} for s in samples]
    if not all(map(KNOWN_FIELDS.issuperset, samples)):
        slow |= ~np.fromiter(map(KNOWN_FIELDS.issuperset, samples), bool, n)
    # ts: epoch numbers in bulk; RFC 3339 strings and anything else one by one below
    ts_col = _column(samples, "ts")
    ts = np.zeros(n, np.int64)
    kinds = set(map(type, ts_col))
    if kinds <= {float, int}:
        try:
            tsf = np.array(ts_col, np.float64)
        except (OverflowError, ValueError, TypeError):
            tsf = np.full(n, np.nan)
        ok = (tsf >= MIN_TS) & (tsf <= now + MAX_FUTURE_S)
        ts[ok] = epoch_to_micros(tsf[ok])
        slow |= ~ok
    elif kinds == {str}:
        ts, ok = rfc3339_utc_to_micros(ts_col)
        ok &= (ts >= to_micros(_MIN_DT)) & (ts <= int((now + MAX_FUTURE_S - PG_EPOCH_UNIX) * 1e6))
        slow |= ~ok
    else:
        slow[:] = True
    # seq
    seq_col = _column(samples, "seq")
    kinds = set(map(type, seq_col))
    if kinds <= {int, _NONE}:
        null = np.fromiter((v is None for v in seq_col), bool, n) if _NONE in kinds else np.zeros(n, bool)
        try:
            seq = np.array([0 if v is None else v for v in seq_col] if _NONE in kinds else seq_col, np.int64)
        except OverflowError:
            seq = np.zeros(n, np.int64)
            slow[:] = True
        slow |= (seq < 0) & ~null
        seq[null] = -1
    else:  # a seq of another type in the batch: every sample's seq is read one by one
        seq = np.full(n, -1, np.int64)
        slow[:] = True
    # floats
    floats = np.empty((n, len(FLOAT_NAMES)), np.float64)
    for j, (name, low, high) in enumerate(FLOAT_FIELDS):
        col = _column(samples, name)
        if set(map(type, col)) <= {float, _NONE}:
            values = np.array(col, np.float64)
        else:
            slow |= np.fromiter((type(v) is not float and v is not None for v in col), bool, n)
            values = np.array([v if type(v) is float else None for v in col], np.float64)
        null = np.isnan(values)
        slow |= out_of_bounds(values, low, high)
        floats[:, j] = values
    on_col = _column(samples, "engine_on")
    kinds = set(map(type, on_col))
    if kinds == {bool}:
        engine_on = np.array(on_col, np.int8)
    else:
        engine_on = np.fromiter((-1 if v is None else 1 if v is True else 0 for v in on_col), np.int8, n)
        if not kinds <= {bool, _NONE}:
            slow |= np.fromiter((v is not None and type(v) is not bool for v in on_col), bool, n)
    for name in ("site_id", "machine_id"):
        col = _column(samples, name)
        if col.count(None) != n:
            slow |= np.fromiter((v is not None for v in col), bool, n)
    extra: list[str | None] | None = None
    keep = np.ones(n, bool)
    raw = out._samples
    for i in np.flatnonzero(slow).tolist():
        topic, payload, site_id, machine_id, received_at, is_array = msgs[msg_of[i]]
        sample = raw[i]
        if type(sample) is dict:
            row = checked_sample_row(sample, site_id, machine_id, received_at, now)
        else:
            row = f"is {_json_type(sample)}, not a sample object"
        if type(row) is str:
            keep[i] = False
            if is_array:
                index = i - out._starts[msg_of[i]]
                if out._positions:
                    index = out._positions.get(int(msg_of[i]), range(index + 1))[index]
                out._rejects.append(Reject(received_at, topic, orjson.dumps(sample), f"sample {index}: {row}",
                                           site_id, machine_id))
            else:
                out._rejects.append(Reject(received_at, topic, payload, row, site_id, machine_id))
            continue
        seq[i] = row[3]
        extra = put_checked_row(i, row, ts, floats, engine_on, extra)
    snap_columns(floats, _STEPS)
    block = RowBlock(keys, key, ts, seq, received, floats, engine_on, extra)
    if not keep.all():
        block = block.take(keep)
    for k in np.unique(block.key).tolist():
        out._sites.add(keys[k][0])
    return block


class BirthPayload(BaseModel):
    """Birth/metadata message body (retained): kind, model, rated payload, anything else kept."""

    model_config = ConfigDict(extra="allow", strict=False)

    kind: Literal["hauler", "loader", "excavator", "dozer", "other"]
    model: str = ""
    rated_payload_kg: float | None = Field(None, ge=0, allow_inf_nan=False)


def _check_ts(ts: Any, now: float) -> datetime | str:
    kind = type(ts)
    if kind is str:
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            return f"ts {_short(ts)} is not an RFC 3339 time"
        if parsed.tzinfo is None:
            return f"ts {_short(ts)} has no UTC offset (RFC 3339 needs Z or +hh:mm)"
        try:
            epoch = parsed.timestamp()
        except (OverflowError, ValueError):
            return f"ts {_short(ts)} is out of range"
        dt = parsed
    elif kind is int or kind is float:
        epoch = ts
        dt = None
    elif ts is None:
        return "ts is missing"
    else:
        return f"ts is {_json_type(ts)}, not an RFC 3339 string or epoch seconds"
    if epoch != epoch:
        return "ts is not a finite number"
    if epoch < MIN_TS:
        return f"ts {_short(ts)} is before 2000-01-01"
    if epoch > now + MAX_FUTURE_S:
        return f"ts {_short(ts)} is more than 1 day in the future"
    return dt if dt is not None else datetime.fromtimestamp(epoch, UTC)


def checked_sample_row(
    sample: dict, site_id: str, machine_id: str, received_at: datetime, now: float
) -> tuple | str:
    """One sample object as a table row, or the reason it is rejected (every rule, every case)."""
    dt = _check_ts(sample.get("ts"), now)
    if type(dt) is str:
        return dt
    seq = sample.get("seq")
    if seq is None:
        seq = -1
    elif type(seq) is not int or seq < 0 or seq > MAX_SEQ:
        return f"seq {_short(seq)} is not an integer in 0..2^63-1"
    values: list[Any] = [site_id, machine_id, dt, seq, received_at]
    get = sample.get
    invalid_payload = None
    for name, low, high in FLOAT_FIELDS:
        value = get(name)
        if value is None:
            values.append(None)
            continue
        kind = type(value)
        if kind is int:
            try:
                value = float(value)
            except OverflowError:
                return f"{name} {_short(value)} is too large"
        elif kind is not float:
            return f"{name} is {_json_type(value)}, not a number"
        if value - value != 0.0:
            return f"{name} {value} is not a finite number"
        if name == "payload_kg" and value < 0.0:
            invalid_payload = value
            values.append(None)
            continue
        if low is not None and value < low:
            if low == 0.0:
                return f"{name} {value:g} is negative"
            return f"{name} {value:g} is outside {low:g}..{high:g}"
        if high is not None and value > high:
            return f"{name} {value:g} is outside {low:g}..{high:g}"
        values.append(snap(value, RESOLUTION[name]))
    engine_on = get("engine_on")
    if engine_on is not None and type(engine_on) is not bool:
        return f"engine_on is {_json_type(engine_on)}, not true or false"
    values.append(engine_on)
    for name, expected, what in (("site_id", site_id, "site"), ("machine_id", machine_id, "machine")):
        given = get(name)
        if given is not None and given != expected:
            return f"{name} {_short(given)} in the payload disagrees with topic {what} {expected!r}"
    if sample.keys() <= KNOWN_FIELDS and invalid_payload is None:
        values.append(None)
    else:
        extra = {k: v for k, v in sample.items() if k not in KNOWN_FIELDS}
        if invalid_payload is not None:
            extra["payload_kg_invalid"] = invalid_payload
        text = orjson.dumps(extra).decode()
        if "\\u0000" in text:
            return "extra fields contain a NUL character (\\u0000), which PostgreSQL cannot store"
        values.append(text)
    return tuple(values)


FLOAT_NAMES = tuple(name for name, _, _ in FLOAT_FIELDS)
_STEPS = np.array([RESOLUTION[name] for name in FLOAT_NAMES])


class Decoder:
    """Decodes raw MQTT messages into rows, registry updates and rejects (never raises on input)."""

    def __init__(self, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self.max_payload_bytes = max_payload_bytes
        self._topics: dict[str, TopicIds | str] = {}

    def topic_ids(self, topic: str) -> TopicIds | str:
        """Parsed topic, cached: a fleet has few distinct topics and they repeat constantly."""
        found = self._topics.get(topic)
        if found is None:
            if len(self._topics) > 100_000:
                self._topics.clear()
            found = self._topics[topic] = parse_topic(topic)
        return found

    def decode_into(self, out: Decoded, topic: str, payload: bytes, received_at: datetime) -> None:
        """Decode one message, appending what it yields to ``out``."""
        ids = self.topic_ids(topic)
        if type(ids) is str:
            out.reject(Reject(received_at, topic, payload, ids))
            return
        if len(payload) > self.max_payload_bytes:
            out.reject(
                Reject(
                    received_at,
                    topic,
                    payload,
                    f"payload is {len(payload)} bytes, over the {self.max_payload_bytes}-byte limit",
                    ids.site_id,
                    ids.machine_id,
                )
            )
            return
        if ids.kind == "telemetry":
            self._telemetry(out, ids, topic, payload, received_at)
        elif ids.kind == "birth":
            self._birth(out, ids, topic, payload, received_at)
        else:
            self._status(out, ids, topic, payload, received_at)

    def _telemetry(
        self, out: Decoded, ids: TopicIds, topic: str, payload: bytes, received_at: datetime
    ) -> None:
        site_id, machine_id = ids.site_id, ids.machine_id
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            out.reject(
                Reject(received_at, topic, payload, f"not valid JSON: {str(exc)[:300]}", site_id, machine_id)
            )
            return
        if type(body) is dict:
            out._starts.append(len(out._samples))
            out._msgs.append((topic, payload, site_id, machine_id, received_at, False))
            out._samples.append(body)
            return
        if type(body) is not list:
            out.reject(
                Reject(
                    received_at,
                    topic,
                    payload,
                    f"payload is {_json_type(body)}; send one sample object or an array of them",
                    site_id,
                    machine_id,
                )
            )
            return
        if not body:
            out.reject(
                Reject(received_at, topic, payload, "payload is an empty array", site_id, machine_id)
            )
            return
        out._starts.append(len(out._samples))
        out._msgs.append((topic, payload, site_id, machine_id, received_at, True))
        out._samples.extend(body)

    def _birth(self, out: Decoded, ids: TopicIds, topic: str, payload: bytes, received_at: datetime) -> None:
        if not payload:
            return  # an empty retained message clears the birth; the registry keeps what it had
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            out.reject(
                Reject(
                    received_at,
                    topic,
                    payload,
                    f"birth: not valid JSON: {str(exc)[:300]}",
                    ids.site_id,
                    ids.machine_id,
                )
            )
            return
        reason = None
        if type(body) is not dict:
            reason = f"birth: payload is {_json_type(body)}, not an object"
        else:
            for name, expected in (("site_id", ids.site_id), ("machine_id", ids.machine_id)):
                given = body.pop(name, None)
                if given is not None and given != expected:
                    reason = f"birth: {name} {_short(given)} in the payload disagrees with topic {expected!r}"
        if reason is None:
            try:
                birth = BirthPayload.model_validate(body)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "payload"
                reason = f"birth: {where}: {first['msg']}"
        if reason is not None:
            out.reject(Reject(received_at, topic, payload, reason, ids.site_id, ids.machine_id))
            return
        attributes = dict(birth.model_extra or {})
        text = orjson.dumps(attributes)
        if b"\\u0000" in text:
            out.reject(
                Reject(
                    received_at,
                    topic,
                    payload,
                    "birth: contains a NUL character (\\u0000)",
                    ids.site_id,
                    ids.machine_id,
                )
            )
            return
        out.births.append(
            Birth(
                ids.site_id,
                ids.machine_id,
                birth.kind,
                birth.model,
                birth.rated_payload_kg,
                attributes,
                received_at,
            )
        )

    def _status(self, out: Decoded, ids: TopicIds, topic: str, payload: bytes, received_at: datetime) -> None:
        if not payload:
            return  # an empty retained message clears the status
        text = payload.strip().strip(b'"').decode("utf-8", "replace").lower()
        if text not in ("online", "offline"):
            out.reject(
                Reject(
                    received_at,
                    topic,
                    payload,
                    f"status {_short(text)} is not 'online' or 'offline'",
                    ids.site_id,
                    ids.machine_id,
                )
            )
            return
        out.statuses.append(Status(ids.site_id, ids.machine_id, text, received_at))


def decode(
    topic: str,
    payload: bytes,
    received_at: datetime | None = None,
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> Decoded:
    """Decode one message on its own (tests, tools); the worker reuses a Decoder instead."""
    out = Decoded()
    Decoder(max_payload_bytes).decode_into(out, topic, payload, received_at or datetime.now(UTC))
    return out
