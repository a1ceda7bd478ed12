"""The mapping language shared by live and recorded data: where each SitePulse field is, in which unit and form.

One set of options, documented once (docs/IMPORT.md), read by the ``mapped-json`` decoder for a tracker's MQTT JSON
and by ``sitepulse import`` for CSV, Parquet and JSON-lines files. Only where the machine id comes from differs
with the transport (a topic level or payload path live; a column or the file name in files). The option model
and the scalar conversions live here; the importer has column-wise twins of the conversions (decoders/history)
that use the same tables and patterns, so a value means the same thing whichever way it arrives.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import Field, field_validator, model_validator

from decoders.sdk import StrictOptions
from ingest.fields import MEASURED_FIELDS

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
TRUE_WORDS = ("true", "t", "yes", "y", "on", "1")
FALSE_WORDS = ("false", "f", "no", "n", "off", "0")
# ``POINT (lon lat)`` / ``POINT Z (lon lat alt)``, optionally behind an ``SRID=4326;`` prefix (EWKT): x is longitude
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
WKT_POINT = (rf"^\s*(?:SRID=\d+;)?\s*POINT\s*(?:Z|M|ZM)?\s*\(\s*(?P<lon>{NUMBER})\s+(?P<lat>{NUMBER})"
             rf"(?:\s+(?P<alt>{NUMBER}))?(?:\s+{NUMBER})?\s*\)\s*$")
_WKT_POINT = re.compile(WKT_POINT, re.IGNORECASE)
ALTITUDE_KEY = "alt_m"  # where a position's altitude is kept in extra

FieldName = Literal[MEASURED_FIELDS]  # the telemetry fields (ingest/fields.py), as pydantic checks them
Sentinel = float | str | bool


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
    """Where one SitePulse field is: value = raw * unit factor * scale + offset; ``absent`` raw values mean none."""

    path: str = Field(min_length=1)
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    absent: list[Sentinel] = Field(default_factory=list, description="raw values meaning 'no reading', e.g. [-99]")


class PositionMap(StrictOptions):
    """Latitude and longitude from one value: WKT ``POINT [Z] (lon lat [alt])`` or a JSON ``{lat, lon, alt}``."""

    path: str = Field(min_length=1)
    format: Literal["wkt", "json"] = "wkt"
    altitude: bool = Field(False, description=f"keep the altitude in extra as {ALTITUDE_KEY!r}")


class ExtraMap(StrictOptions):
    """A value kept in extra under ``name``, read as text, a number or a boolean (the mapping's words)."""

    path: str = Field(min_length=1)
    name: str | None = None
    type: Literal["auto", "text", "number", "bool"] = "auto"

    @property
    def key(self) -> str:
        return self.name or self.path.rsplit(".", 1)[-1]


class Booleans(StrictOptions):
    """The words (case-insensitive) a source writes for true and false."""

    true: list[str] = Field(default_factory=lambda: list(TRUE_WORDS), min_length=1)
    false: list[str] = Field(default_factory=lambda: list(FALSE_WORDS), min_length=1)

    @model_validator(mode="after")
    def _disjoint(self) -> Booleans:
        both = {w.lower() for w in self.true} & {w.lower() for w in self.false}
        if both:
            raise ValueError(f"words {sorted(both)} are both true and false")
        return self

    def words(self) -> dict[str, bool]:
        return {**{w.lower(): False for w in self.false}, **{w.lower(): True for w in self.true}}


class MappingOptions(StrictOptions):
    """The options every mapping has, live or recorded (docs/IMPORT.md is the reference)."""

    machine_ids: dict[str, str] = Field(default_factory=dict, description="source id -> SitePulse machine id")
    ts: str = "ts"
    ts_format: str = Field("rfc3339", description="rfc3339 | epoch_s | epoch_ms | epoch_us | a strptime format")
    timezone: str | None = Field(None, description="IANA zone of times written without an offset")
    fields: dict[FieldName, FieldMap | Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    position: PositionMap | None = Field(None, description="lat and lon from one WKT or JSON value")
    extra: list[ExtraMap | Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="values kept in extra (a path: under its last key)")
    absent: list[Sentinel] = Field(default_factory=list, description="raw values meaning 'no reading' in any field")
    booleans: Booleans = Field(default_factory=Booleans)

    @field_validator("ts_format")
    @classmethod
    def _time_format(cls, value: str) -> str:
        if value in EPOCH_DIVISORS or value == "rfc3339" or "%" in value:
            return value
        raise ValueError("must be rfc3339, epoch_s, epoch_ms, epoch_us or a strptime format such as %d/%m/%Y %H:%M:%S")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone_of(value)
        return value

    @model_validator(mode="after")
    def _known_units(self) -> MappingOptions:
        for name, spec in self.fields.items():
            if isinstance(spec, FieldMap) and spec.unit is not None:
                units = UNITS.get(name, {})
                if spec.unit not in units:
                    raise ValueError(f"fields.{name}.unit {spec.unit!r} is not one of {sorted(units) or 'none'}")
        if self.position is not None and ("lat" in self.fields or "lon" in self.fields):
            raise ValueError("position and fields.lat/fields.lon both give the position; keep one")
        if not self.fields and self.position is None:
            raise ValueError("fields: map at least one field (or a position)")
        return self

    def field_maps(self) -> dict[str, FieldMap]:
        """Every field as a FieldMap, the mapping-wide ``absent`` values added to each field's own."""
        maps = {}
        for name, spec in self.fields.items():
            spec = FieldMap(path=spec) if isinstance(spec, str) else spec
            if self.absent:
                spec = spec.model_copy(update={"absent": [*spec.absent, *self.absent]})
            maps[name] = spec
        return maps

    def extra_maps(self) -> list[ExtraMap]:
        return [ExtraMap(path=e) if isinstance(e, str) else e for e in self.extra]

    def zone(self) -> tzinfo | None:
        """The zone of times without an offset; None: such times are rejected (strptime formats: UTC)."""
        return zone_of(self.timezone) if self.timezone is not None else None


def zone_of(name: str) -> tzinfo:
    """The IANA zone ``name`` (``UTC``, ``Europe/Stockholm``), or ValueError naming it."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone such as UTC or America/Chicago") from None


def field_factor(name: str, spec: FieldMap) -> float:
    """What a raw value is multiplied by: the unit's factor to the contract's unit, times ``scale``."""
    return UNITS.get(name, {}).get(spec.unit or "", 1.0) * spec.scale


def sentinel_set(values: list[Sentinel]) -> frozenset:
    """Raw values that mean absent, as they may arrive: numbers, and their text (``-99``, ``"-99"``, ``"-99.0"``)."""
    found: set[Any] = set()
    for value in values:
        found.add(value)
        if isinstance(value, float | int) and not isinstance(value, bool):
            found.update({float(value), str(value)})
            if float(value).is_integer():
                found.add(str(int(value)))
        elif isinstance(value, str):
            try:
                found.add(float(value))
            except ValueError:
                pass
    return frozenset(found)


def point_of(value: Any, form: str) -> tuple[float, float, float | None] | str | None:
    """(lat, lon, alt) from a WKT point or a JSON ``{lat, lon, alt}``; None for an empty point; else why not."""
    if value is None:
        return None
    if form == "wkt":
        if type(value) is not str:
            return f"is {type(value).__name__}, not WKT text"
        found = _WKT_POINT.match(value)
        if found is None:
            return None if value.strip().upper() in ("", "POINT EMPTY") else f"{value[:60]!r} is not a WKT POINT"
        alt = found["alt"]
        return float(found["lat"]), float(found["lon"]), float(alt) if alt is not None else None
    if type(value) is str:
        if not value.strip():
            return None
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return f"{value[:60]!r} is not JSON"
    if type(value) is not dict:
        return f"is {type(value).__name__}, not an object with lat and lon"
    try:
        lat, lon, alt = value.get("lat"), value.get("lon", value.get("lng")), value.get("alt")
        if lat is None and lon is None:
            return None
        return float(lat), float(lon), None if alt is None else float(alt)
    except (TypeError, ValueError):
        return f"{orjson.dumps(value).decode()[:60]} has no numeric lat and lon"


def typed_extra(value: Any, kind: str, words: dict[str, bool]) -> Any:
    """A value kept in extra, as its ExtraMap ``type`` asks (left as it is when it does not read as that type)."""
    if kind == "bool":
        if type(value) is bool:
            return value
        return words.get(str(value).lower(), value)
    if kind == "number" and type(value) is str:
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "text" and value is not None and type(value) is not str:
        return str(value)
    return value


def naive_to_epoch(parsed: datetime, zone: tzinfo | None) -> float:
    """Epoch seconds of a parsed time; one written without an offset is read in ``zone`` (None: UTC)."""
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone or UTC)).timestamp()
