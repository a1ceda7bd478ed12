"""A chunk of recorded rows -> checked telemetry rows (a RowBlock) and rejects, column by column.

The column-wise twin of the mapped-json decoder's per-reading conversion (same units, sentinels, boolean words,
WKT pattern and time rules from decoders/mapped_json/mapping.py) and of the contract's batch check: whole columns
are converted with pyarrow/numpy, and only rows that look unusual (a value out of range, text that is not a
number, a time outside the contract's window) go through ``ingest.contract.checked_sample_row`` one by one, which
gives the contract's own reason or row. Why: a Python object per row would cap an import far below 150k rows/s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from time import time
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from decoders.history.mapping import FileMapping
from decoders.mapped_json.mapping import (
    ALTITUDE_KEY,
    EPOCH_DIVISORS,
    WKT_POINT,
    field_factor,
    naive_to_epoch,
    point_of,
    sentinel_set,
)
from decoders.sdk import bad_id
from ingest.columns import PG_EPOCH_UNIX, RowBlock, epoch_to_micros, from_micros, snap_columns, to_micros
from ingest.contract import (
    FLOAT_FIELDS,
    FLOAT_NAMES,
    MAX_FUTURE_S,
    MIN_TS,
    RESOLUTION,
    Reject,
    checked_sample_row,
    out_of_bounds,
    put_checked_row,
)
from sitepulse.errors import ConfigError

_STEPS = np.array([RESOLUTION[name] for name in FLOAT_NAMES])
_US = 1_000_000
_UTC_TS = pa.timestamp("us", "UTC")
_NAIVE_TS = pa.timestamp("us")
_ISO_NAIVE = r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d{1,6})?)?$"
_ISO_OFFSET = _ISO_NAIVE.removesuffix("$") + r"(Z|[+-]\d\d(:?\d\d)?)$"


@dataclass
class Chunk:
    """Rows read from one file: a column per path, and a row's raw values (for its reject)."""

    first_row: int  # data row number (from 1, the header not counted) of the chunk's first row
    length: int
    column: Callable[[str], pa.Array]  # path -> values (nulls where the row has none)
    raw_row: Callable[[int], dict]
    row_numbers: list[int] | None = None  # each row's number, where they are not consecutive

    def row_number(self, i: int) -> int:
        return self.row_numbers[i] if self.row_numbers is not None else self.first_row + i


@dataclass
class Converted:
    """A chunk's stored-to-be rows and its rejects, each reject with a short class for the summary."""

    block: RowBlock
    rejects: list[Reject] = field(default_factory=list)


def reason_class(reason: str) -> str:
    """A reject reason without its values, so the summary counts alike reasons together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason)
    return re.sub(r"[-+]?\d[\d.:eE+-]*", "N", text)


def _strings(values: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(values.cast(pa.string()))


def _floats(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """float64 values (NaN: null or not a number) and which non-null values did not read as a number."""
    if pa.types.is_boolean(values.type):
        values = values.cast(pa.int8())
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_decimal(values.type):
        out = values.cast(pa.float64()).to_numpy(zero_copy_only=False, writable=True)
        return out, np.zeros(len(out), bool)
    text = _strings(values)
    try:
        out = text.cast(pa.float64()).to_numpy(zero_copy_only=False, writable=True)
        return out, np.zeros(len(out), bool)
    except pa.ArrowInvalid:  # some text is not a number: those rows go to the contract with their text
        numeric = pc.match_substring_regex(text, r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^(?i:nan|[-+]?inf)$")
        numeric = numeric.fill_null(False)
        out = pc.if_else(numeric, text, pa.scalar(None, pa.string())).cast(pa.float64())
        bad = ~numeric.to_numpy(zero_copy_only=False) & text.is_valid().to_numpy(zero_copy_only=False)
        return out.to_numpy(zero_copy_only=False, writable=True), bad


def _absent_mask(values: pa.Array, sentinels: frozenset) -> np.ndarray | None:
    """Rows whose raw value is one of the sentinels (compared as numbers and as text)."""
    if not sentinels:
        return None
    numbers = [v for v in sentinels if isinstance(v, float) and not isinstance(v, bool)]
    texts = [v for v in sentinels if isinstance(v, str)]
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        mask = pc.is_in(_strings(values), pa.array(texts, pa.string())) if texts else None
        if numbers:
            floats, _ = _floats(values)
            hit = np.isin(floats, numbers)
            return hit if mask is None else hit | mask.fill_null(False).to_numpy(zero_copy_only=False)
        return None if mask is None else mask.fill_null(False).to_numpy(zero_copy_only=False)
    if numbers and (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        return np.isin(values.cast(pa.float64()).to_numpy(zero_copy_only=False), numbers)
    return None


def _json_escaped(text: pa.Array) -> pa.Array:
    """Text as the inside of a JSON string: backslash and quote escaped, control characters as orjson writes them."""
    escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
    control = pc.match_substring_regex(text, "[\\x00-\\x1f]").fill_null(False)
    if not pc.any(control).as_py():
        return escaped
    values = escaped.to_pylist()
    rows = np.flatnonzero(control.to_numpy(zero_copy_only=False)).tolist()
    for i, value in zip(rows, text.filter(control).to_pylist(), strict=True):
        values[i] = orjson.dumps(value).decode()[1:-1]
    return pa.array(values, pa.string())


class ChunkConverter:
    """Converts the chunks of one file with one mapping, for one site."""

    def __init__(self, mapping: FileMapping, site_id: str, source: str, file_name: str) -> None:
        self.mapping = mapping
        self.site_id = site_id
        self.topic = f"import:{source}"
        self.zone: tzinfo | None = mapping.zone()
        self.words = mapping.booleans.words()
        self.fields = mapping.field_maps()
        self.extras = mapping.extra_maps()
        kind, _, where = mapping.machine.partition(":")
        self.machine_column = where if kind == "column" else None
        self.file_machine = ""
        if kind == "file":
            self.file_machine = self._machine_from_name(file_name, where)
        self.received_at = datetime.now(UTC)

    def _machine_from_name(self, file_name: str, pattern: str) -> str:
        if not pattern:
            raw = file_name.split(".")[0]
        else:
            found = re.search(pattern, file_name)
            if found is None:
                raise ConfigError("--mapping", f"machine: file name {file_name!r} does not match {pattern!r}")
            raw = found.group(1) if found.groups() else found.group(0)
        machine = self.mapping.machine_ids.get(raw, raw)
        why = bad_id(machine)
        if why:
            raise ConfigError("--mapping", f"machine: the id in file name {file_name!r}: {why} (see machine_ids)")
        return machine

    # --- the chunk ------------------------------------------------------------------------------------------
    def convert(self, chunk: Chunk) -> Converted:
        n = chunk.length
        now = time()
        received = np.full(n, to_micros(self.received_at), np.int64)
        reasons: dict[int, str] = {}  # row -> the mapping's own reason (the contract gives the others)
        raw: dict[int, dict[str, Any]] = {}  # row -> raw values of the unusual rows, for the contract

        def flag(mask: np.ndarray, why: Callable[[int], str]) -> None:
            for i in np.flatnonzero(mask).tolist():
                if i not in reasons:
                    reasons[i] = why(i)

        def note(mask: np.ndarray, name: str, values: pa.Array) -> None:
            for i in np.flatnonzero(mask).tolist():
                value = values[i].as_py()
                if isinstance(value, datetime):  # a Parquet timestamp: as the text the contract reads
                    value = (value if value.tzinfo else value.replace(tzinfo=self.zone or UTC)).isoformat()
                raw.setdefault(i, {})[name] = value

        keys, key = self._machines(chunk, flag)
        ts, ts_ok = self._times(chunk, flag, note)
        floats = np.full((n, len(FLOAT_NAMES)), np.nan)
        engine_on = np.full(n, -1, np.int8)
        for name, spec in self.fields.items():
            values = chunk.column(spec.path)
            absent = _absent_mask(values, sentinel_set(spec.absent))
            if name == "engine_on":
                on, unread = self._booleans(values)
                if absent is not None:
                    on[absent] = -1
                    unread &= ~absent
                engine_on = on
                note(unread, name, values)
                continue
            numbers, unread = _floats(values)
            if absent is not None:
                numbers[absent] = np.nan
                unread &= ~absent
            factor = field_factor(name, spec)
            if factor != 1.0 or spec.offset != 0.0:
                numbers = numbers * factor + spec.offset
            floats[:, FLOAT_NAMES.index(name)] = numbers
            note(unread, name, values)
        altitude = self._position(chunk, floats, flag)
        found = self._extra(chunk, altitude)
        extra = None
        slow = ~ts_ok
        if found is not None:
            extra, nul = found
            slow |= nul
        for j, (_, low, high) in enumerate(FLOAT_FIELDS):
            slow |= out_of_bounds(floats[:, j], low, high)
        if raw:
            slow[list(raw)] = True
        if reasons:
            slow[list(reasons)] = False
        keep = np.ones(n, bool)
        rejects: list[Reject] = []
        for i, reason in sorted(reasons.items()):
            keep[i] = False
            rejects.append(self._reject(chunk, i, reason, keys, key))
        for i in np.flatnonzero(slow).tolist():
            sample = self._sample(i, ts, floats, engine_on, extra, raw.get(i, {}))
            site, machine = keys[int(key[i])]
            row = checked_sample_row(sample, site, machine, self.received_at, now)
            if type(row) is str:
                keep[i] = False
                rejects.append(self._reject(chunk, i, row, keys, key))
                continue
            extra = put_checked_row(i, row, ts, floats, engine_on, extra)
        snap_columns(floats, _STEPS)
        block = RowBlock(keys, key, ts, np.full(n, -1, np.int64), received, floats, engine_on, extra)
        if not keep.all():
            block = block.take(keep)
        return Converted(block, rejects)

    # --- parts ----------------------------------------------------------------------------------------------
    def _reject(self, chunk: Chunk, i: int, reason: str, keys: list, key: np.ndarray) -> Reject:
        machine = keys[int(key[i])][1] if keys else None
        payload = orjson.dumps(chunk.raw_row(i), default=str)
        return Reject(self.received_at, self.topic, payload, f"row {chunk.row_number(i)}: {reason}", self.site_id,
                      machine or None, reason_class(reason))

    def _machines(self, chunk: Chunk, flag: Callable) -> tuple[list[tuple[str, str]], np.ndarray]:
        """(site, machine) keys in sorted order and each row's key; rows without a usable id are flagged."""
        n = chunk.length
        if self.machine_column is None:
            return [(self.site_id, self.file_machine)], np.zeros(n, np.int64)
        values = chunk.column(self.machine_column)
        if not pa.types.is_dictionary(values.type):
            values = values.cast(pa.string()).dictionary_encode()
        names = values.dictionary.cast(pa.string()).to_pylist()
        ids: list[str] = []
        problems: dict[int, str] = {}
        for index, name in enumerate(names):
            machine = self.mapping.machine_ids.get(name, name)
            why = bad_id(machine)
            if why:
                problems[index] = f"machine id {why} (column {self.machine_column!r})"
                machine = ""
            ids.append(machine)
        keys = sorted({(self.site_id, m) for m in ids} | {(self.site_id, "")})
        where = {k: i for i, k in enumerate(keys)}
        lookup = np.array([where[(self.site_id, m)] for m in ids] or [0], np.int64)
        indices = values.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        missing = indices < 0
        key = np.where(missing, where[(self.site_id, "")], lookup[np.clip(indices, 0, None)])
        flag(missing, lambda i: f"machine id is missing (column {self.machine_column!r})")
        if problems:
            bad = np.isin(indices, list(problems))
            flag(bad, lambda i: problems[int(indices[i])])
        return keys, key

    def _times(self, chunk: Chunk, flag: Callable, note: Callable) -> tuple[np.ndarray, np.ndarray]:
        """PostgreSQL microseconds of each row's time, and where it is inside the contract's window."""
        values = chunk.column(self.mapping.ts)
        n = len(values)
        fmt = self.mapping.ts_format
        micros = np.zeros(n, np.int64)
        parsed = np.zeros(n, bool)
        divisor = EPOCH_DIVISORS.get(fmt)
        kind = values.type
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            stamps = values.cast(_NAIVE_TS if getattr(kind, "tz", None) is None else _UTC_TS)
            micros, parsed = self._stamps(stamps)
        elif divisor is not None or pa.types.is_integer(kind) or pa.types.is_floating(kind):
            seconds, unread = _floats(values)
            seconds = seconds / (divisor or 1.0)
            parsed = np.isfinite(seconds)
            micros[parsed] = epoch_to_micros(seconds[parsed])
            note(unread, "ts", values)
        else:
            text = _strings(values)
            stamps = self._fast_times(text, fmt)
            if stamps is not None:
                micros, parsed = self._stamps(stamps)
            self._slow_times(text, fmt, micros, parsed, flag, note)
        now = time()
        low, high = (MIN_TS - PG_EPOCH_UNIX) * _US, (now + MAX_FUTURE_S - PG_EPOCH_UNIX) * _US
        ok = parsed & (micros >= low) & (micros <= high)
        missing = ~values.is_valid().to_numpy(zero_copy_only=False)
        note(missing | (parsed & ~ok), "ts", values)  # the contract names what is wrong with them
        return micros, ok

    def _stamps(self, stamps: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        if stamps.type.tz is None:
            stamps = pc.assume_timezone(stamps, str(self.zone or "UTC"), ambiguous="earliest",
                                        nonexistent="latest")
        ints = stamps.cast(pa.int64())
        ok = ints.is_valid().to_numpy(zero_copy_only=False)
        unix = ints.fill_null(0).to_numpy(zero_copy_only=False)
        return unix - PG_EPOCH_UNIX * _US, ok

    def _fast_times(self, text: pa.Array, fmt: str) -> pa.Array | None:
        """The whole column read by pyarrow, or None when some value needs the per-value reader."""
        if fmt != "rfc3339":
            if "%f" in fmt:
                return None  # pyarrow's strptime has no %f
            return pc.strptime(text, fmt, "us", error_is_null=True)
        for kind in (_UTC_TS,) if self.zone is None else (_NAIVE_TS, _UTC_TS):  # no zone: naive is wrong
            try:
                return text.cast(kind)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        # some values are not times: read the well-formed ones here, the others one by one
        shaped = pc.match_substring_regex(text, _ISO_OFFSET if self.zone is None else _ISO_NAIVE).fill_null(False)
        try:
            return pc.if_else(shaped, text, pa.scalar(None, pa.string())).cast(
                _UTC_TS if self.zone is None else _NAIVE_TS)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None

    def _slow_times(self, text: pa.Array, fmt: str, micros: np.ndarray, parsed: np.ndarray, flag: Callable,
                    note: Callable) -> None:
        """Per value, for the rows pyarrow did not read (other offsets, %f, mistakes)."""
        valid = text.is_valid().to_numpy(zero_copy_only=False)
        todo = np.flatnonzero(valid & ~parsed).tolist()
        if not todo:
            return
        values = text.take(pa.array(todo)).to_pylist()
        bad_format: list[int] = []
        done: list[int] = []
        epochs: list[float] = []
        for i, value in zip(todo, values, strict=True):
            try:
                when = datetime.fromisoformat(value) if fmt == "rfc3339" else datetime.strptime(value, fmt)
                if when.tzinfo is None and fmt == "rfc3339" and self.zone is None:
                    raise ValueError("no offset")
                epochs.append(naive_to_epoch(when, self.zone))
            except (ValueError, OverflowError):
                bad_format.append(i)
                continue
            done.append(i)
        if done:
            micros[done] = epoch_to_micros(np.array(epochs))
            parsed[done] = True
        mask = np.zeros(len(micros), bool)
        mask[bad_format] = True
        if fmt == "rfc3339":
            note(mask, "ts", text)  # the contract's words: not an RFC 3339 time / has no UTC offset
        else:
            flag(mask, lambda i: f"ts {text[i].as_py()[:40]!r} does not match ts_format {fmt!r}")

    def _booleans(self, values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """engine_on as -1 (none), 0, 1, and which values are not one of the mapping's words."""
        n = len(values)
        if pa.types.is_boolean(values.type):
            out = values.cast(pa.int8()).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int8)
            return out, np.zeros(n, bool)
        text = pc.utf8_lower(_strings(values))
        truths = [w for w, v in self.words.items() if v]
        falses = [w for w, v in self.words.items() if not v]
        is_true = pc.is_in(text, pa.array(truths)).fill_null(False).to_numpy(zero_copy_only=False)
        is_false = pc.is_in(text, pa.array(falses)).fill_null(False).to_numpy(zero_copy_only=False)
        out = np.where(is_true, 1, np.where(is_false, 0, -1)).astype(np.int8)
        unread = text.is_valid().to_numpy(zero_copy_only=False) & ~is_true & ~is_false
        return out, unread

    def _position(self, chunk: Chunk, floats: np.ndarray, flag: Callable) -> np.ndarray | None:
        """lat and lon from the position value into ``floats``; the altitudes (or None) for extra."""
        position = self.mapping.position
        if position is None:
            return None
        values = chunk.column(position.path)
        n = len(values)
        lat = np.full(n, np.nan)
        lon = np.full(n, np.nan)
        alt = np.full(n, np.nan)
        kind = values.type
        if pa.types.is_struct(kind):
            names = {kind.field(i).name for i in range(kind.num_fields)}
            for target, options in ((lat, ("lat",)), (lon, ("lon", "lng")), (alt, ("alt",))):
                name = next((o for o in options if o in names), None)
                if name is not None:
                    target[:], _ = _floats(pc.struct_field(values, name))
        elif position.format == "wkt" and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            parts = pc.extract_regex(values, "(?i)" + WKT_POINT)
            lon[:], _ = _floats(pc.struct_field(parts, "lon"))
            lat[:], _ = _floats(pc.struct_field(parts, "lat"))
            alt_text = pc.struct_field(parts, "alt")
            alt[:], _ = _floats(pc.if_else(pc.equal(alt_text, ""), pa.scalar(None, pa.string()), alt_text))
            unmatched = values.is_valid().to_numpy(zero_copy_only=False) & ~parts.is_valid().to_numpy(
                zero_copy_only=False)
            self._per_value(values, unmatched, position.format, lat, lon, alt, flag)
        else:
            todo = values.is_valid().to_numpy(zero_copy_only=False)
            self._per_value(values, todo, position.format, lat, lon, alt, flag)
        floats[:, FLOAT_NAMES.index("lat")] = lat
        floats[:, FLOAT_NAMES.index("lon")] = lon
        return alt if position.altitude else None

    @staticmethod
    def _per_value(values: pa.Array, todo: np.ndarray, form: str, lat: np.ndarray, lon: np.ndarray,
                   alt: np.ndarray, flag: Callable) -> None:
        problems: dict[int, str] = {}
        for i in np.flatnonzero(todo).tolist():
            point = point_of(values[i].as_py(), form)
            if type(point) is str:
                problems[i] = f"position {point}"
            elif point is not None:
                lat[i], lon[i] = point[0], point[1]
                alt[i] = np.nan if point[2] is None else point[2]
        if problems:
            mask = np.zeros(len(values), bool)
            mask[list(problems)] = True
            flag(mask, problems.__getitem__)

    def _extra(self, chunk: Chunk, altitude: np.ndarray | None) -> tuple[list[str | None], np.ndarray] | None:
        """Each row's extra object as JSON text (None where it has nothing) and which rows hold a NUL character
        (PostgreSQL cannot store it: the contract rejects them), or None when no row has any extra.

        Built column-wise: each value becomes a ``"key":value`` fragment (null where absent) and the fragments of a
        row are joined, so a row costs no Python dict; values JSON cannot take as they are go through orjson.
        """
        fragments: list[pa.Array] = []
        for spec in self.extras:
            fragments.append(self._fragment(spec.key, chunk.column(spec.path), spec.type))
        if altitude is not None:
            fragments.append(self._fragment(ALTITUDE_KEY, pa.array(altitude, from_pandas=True), "number"))
        if not fragments:
            return None
        # each fragment ends with its comma; null_handling="skip" dropped rows where every fragment was null
        joined = pc.binary_join_element_wise(*fragments, "", null_handling="replace", null_replacement="")
        text = pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()),
                          pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(joined, 0, -1), "}", ""))
        if text.null_count == len(text):
            return None
        nul = pc.match_substring(text, "\\u0000").fill_null(False).to_numpy(zero_copy_only=False)
        return text.to_pylist(), nul

    def _fragment(self, key: str, values: pa.Array, kind: str) -> pa.Array:
        """``"key":value`` per row (null where the value is), the value as JSON of the ExtraMap's type."""
        name = orjson.dumps(key).decode() + ":"
        value_type = values.type
        if kind == "bool" and not pa.types.is_boolean(value_type):
            words = pc.utf8_lower(_strings(values))
            truth = pc.is_in(words, pa.array([w for w, v in self.words.items() if v]))
            falsity = pc.is_in(words, pa.array([w for w, v in self.words.items() if not v]))
            json = pc.if_else(truth, "true", pc.if_else(falsity, "false", pc.binary_join_element_wise(
                '"', _json_escaped(values.cast(pa.string())), '"', "")))
        elif pa.types.is_boolean(value_type):
            json = pc.if_else(values, "true", "false")
        elif kind == "number" or pa.types.is_integer(value_type) or pa.types.is_floating(value_type):
            numbers, unread = _floats(values) if kind == "number" else (None, None)
            if numbers is not None and not unread.any():
                values = pa.array(numbers, from_pandas=True)
            if pa.types.is_floating(values.type):
                values = pc.if_else(pc.is_finite(values), values, pa.scalar(None, values.type))
                json = values.cast(pa.string())
            elif pa.types.is_integer(values.type):
                json = values.cast(pa.string())
            else:
                json = pc.binary_join_element_wise('"', _json_escaped(values.cast(pa.string())), '"', "")
        elif pa.types.is_string(value_type) or pa.types.is_large_string(value_type) or kind == "text":
            json = pc.binary_join_element_wise('"', _json_escaped(values.cast(pa.string())), '"', "")
        else:  # nested values (JSON lines, Parquet structs): orjson, value by value
            json = pa.array([None if v is None else orjson.dumps(v, default=str).decode() for v in values.to_pylist()],
                            pa.string())
        return pc.binary_join_element_wise(name, json, ",", "")

    @staticmethod
    def _sample(i: int, ts: np.ndarray, floats: np.ndarray, engine_on: np.ndarray, extra: list | None,
                raw: dict[str, Any]) -> dict[str, Any]:
        """One unusual row as the sample object the contract judges (raw text where a value did not read)."""
        sample: dict[str, Any] = {"ts": from_micros(int(ts[i])).isoformat()}
        for j, name in enumerate(FLOAT_NAMES):
            value = floats[i, j]
            if value == value:
                sample[name] = float(value)
        if engine_on[i] >= 0:
            sample["engine_on"] = bool(engine_on[i])
        if extra is not None and extra[i] is not None:
            sample.update(orjson.loads(extra[i]))
        sample.update(raw)
        return sample

