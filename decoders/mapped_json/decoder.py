"""Mapped JSON for generic trackers: topic pattern -> field paths, units and scale, time format, machine id.

Like an IoT gateway's uplink converter, but declarative: the route's ``options`` say where each SitePulse
field is in the tracker's JSON (``gps.lat``, ``records.0.v``), in which unit (converted to the contract's),
how the time is written, and where the machine id comes from (a topic level or a payload path). The
mapped samples then go through ingest's own checks, so a mapped value out of range is rejected with the
same reason a native one would be.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, field_validator, model_validator

from decoders.sdk import (
    DecoderContext,
    DecoderPlugin,
    Route,
    StrictOptions,
    as_field,
    bad_id,
    emit_reject,
    emit_samples,
)
from ingest.contract import Decoded
from ingest.fields import MEASURED_FIELDS

NAME = "mapped-json"

# unit -> factor to the contract's unit, per field family
UNITS: dict[str, dict[str, float]] = {
    "speed_kmh": {"km/h": 1.0, "m/s": 3.6, "mph": 1.609344, "kn": 1.852},
    "heading_deg": {"deg": 1.0, "rad": 57.29577951308232},
    "payload_kg": {"kg": 1.0, "t": 1000.0, "lb": 0.45359237},
    "fuel_used_l": {"l": 1.0, "ml": 0.001, "gal": 3.785411784, "m3": 1000.0},
    "engine_hours": {"h": 1.0, "min": 1 / 60, "s": 1 / 3600},
    "lat": {"deg": 1.0, "microdeg": 1e-6, "deg_e7": 1e-7},
    "lon": {"deg": 1.0, "microdeg": 1e-6, "deg_e7": 1e-7},
}
EPOCH_DIVISORS = {"epoch_s": 1.0, "epoch_ms": 1e3, "epoch_us": 1e6}

FieldName = Literal[MEASURED_FIELDS]  # the telemetry fields (ingest/fields.py), as pydantic checks them


def compile_path(path: str) -> tuple[str | int, ...]:
    """``"records.0.lat"`` as keys and list indexes; an empty path is the document itself."""
    return tuple(int(p) if p.isdigit() else p for p in path.split(".")) if path else ()


def get_path(doc: Any, keys: tuple[str | int, ...]) -> Any:
    """The value at ``keys``, or None where the document has no such place."""
    for key in keys:
        if type(key) is int:
            if type(doc) is not list or key >= len(doc):
                return None
        elif type(doc) is not dict:
            return None
        else:
            doc = doc.get(key)
            continue
        doc = doc[key]
    return doc


class FieldMap(StrictOptions):
    """Where one SitePulse field is in the tracker's JSON: value = raw * unit factor * scale + offset."""

    path: str = Field(min_length=1)
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0


class MappedJsonOptions(StrictOptions):
    """A route's mapping (decoders/mapped_json/sample.toml is the commented example)."""

    machine: str = Field("topic:1", description="topic:N (topic level, from 0) or payload:PATH")
    machine_ids: dict[str, str] = Field(default_factory=dict, description="tracker id -> SitePulse machine id")
    records: str | None = Field(None, description="path of an array of readings, for trackers that batch")
    ts: str = "ts"
    ts_format: str = Field("rfc3339", description="rfc3339 | epoch_s | epoch_ms | epoch_us | a strptime format")
    fields: dict[FieldName, FieldMap | Annotated[str, Field(min_length=1)]]
    extra: list[str] = Field(default_factory=list, description="paths kept in extra, under their last key")

    @field_validator("machine")
    @classmethod
    def _machine_source(cls, value: str) -> str:
        kind, _, where = value.partition(":")
        if kind == "topic" and where.isdigit() or kind == "payload" and where:
            return value
        raise ValueError("must be topic:N (level from 0) or payload:PATH")

    @field_validator("ts_format")
    @classmethod
    def _time_format(cls, value: str) -> str:
        if value in EPOCH_DIVISORS or value == "rfc3339" or "%" in value:
            return value
        raise ValueError("must be rfc3339, epoch_s, epoch_ms, epoch_us or a strptime format such as %d/%m/%Y %H:%M:%S")

    @model_validator(mode="after")
    def _known_units(self) -> MappedJsonOptions:
        for name, spec in self.fields.items():
            if isinstance(spec, FieldMap) and spec.unit is not None:
                units = UNITS.get(name, {})
                if spec.unit not in units:
                    raise ValueError(f"fields.{name}.unit {spec.unit!r} is not one of {sorted(units) or 'none'}")
        return self


class MappedJsonDecoder:
    """Decodes one route's messages with its compiled mapping."""

    def __init__(self, route: Route) -> None:
        options: MappedJsonOptions = route.options
        self.site_id = route.site_id
        kind, _, where = options.machine.partition(":")
        self.machine_level = int(where) if kind == "topic" else None
        self.machine_path = compile_path(where) if kind == "payload" else ()
        self.machine_ids = options.machine_ids
        self.records = compile_path(options.records) if options.records is not None else None
        self.ts_path = compile_path(options.ts)
        self.ts_format = options.ts_format
        self.ts_divisor = EPOCH_DIVISORS.get(options.ts_format)
        groups: dict[str, list[tuple[str, tuple[str | int, ...], float | None, float]]] = {}
        for name, spec in options.fields.items():
            if isinstance(spec, str):
                spec = FieldMap(path=spec)
            factor = UNITS.get(name, {}).get(spec.unit or "", 1.0) * spec.scale
            keys = compile_path(spec.path)
            scaled = factor != 1.0 or spec.offset != 0.0
            groups.setdefault(str(keys[0]), []).append((name, keys[1:], factor if scaled else None, spec.offset))
        self.groups = list(groups.items())
        self.extra = [(compile_path(p), p.rsplit(".", 1)[-1]) for p in options.extra]
        self._machines: dict[str, str | None] = {}

    def decode(self, out: Decoded, topic: str, payload: bytes, received_at: datetime) -> None:
        """One tracker message -> samples of one machine, or a reject naming what did not fit."""
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            emit_reject(out, topic, payload, received_at, f"{NAME}: not valid JSON: {str(exc)[:300]}", "not-json",
                        self.site_id)
            return
        machine = self._machine(topic, body)
        if type(machine) is tuple:
            emit_reject(out, topic, payload, received_at, f"{NAME}: machine id {machine[0]}", "machine-id",
                        self.site_id)
            return
        if self.records is None and type(body) is dict:  # the common message: one reading
            sample = self._sample(body)
            if type(sample) is dict:
                out.add_samples(topic, payload, self.site_id, machine, received_at, [sample])
                return
        records = body if self.records is None else get_path(body, self.records)
        if type(records) is dict:
            records = [records]
        elif type(records) is not list or not records:
            where = f"at {'.'.join(map(str, self.records))!r}" if self.records else "payload"
            what = "an empty array" if records == [] else type(records).__name__.replace("NoneType", "missing")
            emit_reject(out, topic, payload, received_at,
                        f"{NAME}: {where} is {what}; expected a reading object or an array of them", "shape",
                        self.site_id, machine)
            return
        samples: list[dict] = []
        positions: list[int] = []
        problems: list[tuple[int, str]] = []
        for index, record in enumerate(records):
            sample = self._sample(record)
            if type(sample) is str:
                problems.append((index, sample))
            else:
                samples.append(sample)
                positions.append(index)
        if not problems:
            emit_samples(out, topic, payload, self.site_id, machine, received_at, samples)
            return
        if len(records) == 1:
            emit_reject(out, topic, payload, received_at, f"{NAME}: {problems[0][1]}", "mapping", self.site_id,
                        machine)
            return
        for index, reason in problems:
            emit_reject(out, topic, orjson.dumps(records[index]), received_at, f"sample {index}: {NAME}: {reason}",
                        "mapping", self.site_id, machine)
        emit_samples(out, topic, payload, self.site_id, machine, received_at, samples, positions)

    def _machine(self, topic: str, body: Any) -> str | tuple[str]:
        if self.machine_level is not None:
            found = self._machines.get(topic, "")
            if found != "":
                return found if found is not None else ("missing",)
            levels = topic.split("/")
            raw = levels[self.machine_level] if self.machine_level < len(levels) else None
        else:
            raw = get_path(body, self.machine_path)
            if type(raw) is int:
                raw = str(raw)
        if type(raw) is not str:
            return (f"is missing (machine = {'topic level' if self.machine_level is not None else 'payload'})",)
        machine = self.machine_ids.get(raw, raw)
        why = bad_id(machine)
        if self.machine_level is not None and len(self._machines) < 100_000:
            self._machines[topic] = None if why else machine
        return (why,) if why else machine

    def _sample(self, record: Any) -> dict | str:
        if type(record) is not dict:
            return f"reading is {type(record).__name__}, not an object"
        sample: dict[str, Any] = {}
        raw_ts = record.get(self.ts_path[0]) if len(self.ts_path) == 1 else get_path(record, self.ts_path)
        if raw_ts is not None:
            kind = type(raw_ts)
            if (kind is int or kind is float) and self.ts_divisor is not None:
                sample["ts"] = raw_ts if self.ts_divisor == 1.0 else raw_ts / self.ts_divisor
            else:
                ts = self._ts(raw_ts)
                if type(ts) is tuple:
                    return ts[0]
                sample["ts"] = ts
        for first, members in self.groups:  # fields under one top-level key share its lookup
            parent = record.get(first)
            if parent is None:
                continue
            for name, rest, factor, offset in members:
                value = parent
                for key in rest:  # get_path, inlined: this runs for every field of every reading
                    kind = type(value)
                    if kind is dict:
                        value = value.get(key if type(key) is str else str(key))
                    elif kind is list and type(key) is int and key < len(value):
                        value = value[key]
                    else:
                        value = None
                        break
                if value is None:
                    continue
                if type(value) is not float:
                    value = as_field(name, value)
                if factor is not None and type(value) is float:
                    value = value * factor + offset
                sample[name] = value
        for keys, key in self.extra:
            value = get_path(record, keys)
            if value is not None:
                sample[key] = value
        return sample

    def _ts(self, raw: Any) -> Any:
        divisor = self.ts_divisor
        kind = type(raw)
        if divisor is not None:
            if kind is str:
                try:
                    raw = float(raw)
                except ValueError:
                    return (f"ts {raw[:40]!r} is not a number ({self.ts_format})",)
            elif kind is not int and kind is not float:
                return raw  # the contract names what it is
            return raw / divisor if divisor != 1.0 else raw
        if self.ts_format == "rfc3339" or kind is not str:
            return raw
        try:
            parsed = datetime.strptime(raw, self.ts_format)
        except ValueError:
            return (f"ts {raw[:40]!r} does not match {self.ts_format!r}",)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


class MappedJson(DecoderPlugin):
    """Declaration: a generic tracker's JSON mapped onto SitePulse fields."""

    name = NAME
    version = "0.1.0"
    summary = "A tracker's own JSON mapped onto SitePulse fields (paths, units, time format, machine id)"
    transport = "mqtt"
    Options = MappedJsonOptions

    def create(self, route: Route, context: DecoderContext) -> MappedJsonDecoder:
        return MappedJsonDecoder(route)
