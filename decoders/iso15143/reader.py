"""A tolerant ISO 15143-3 (AEMP 2.0) reader: fleet snapshots and time series, JSON or XML, as samples.

Real OEM feeds differ in ways that do not change the meaning, and the reader accepts all of them: element
or key names in any letter case, XML namespaces (default or prefixed, any URI), ``datetime`` as an
attribute, a child element or a JSON key (``DateTime``, ``dateTime``...), numbers as text, missing optional
blocks, ``Links`` as elements (``<Rel>``/``<Href>``) or attributes. Both formats are first turned into the
same tree of lower-case keys, so one extraction reads them.

Each data element carries its own time; a machine's elements that share a time make one sample (``merge``),
whose ``seq`` is the set of element kinds it holds (a bit each, FAMILY_BIT). The same reading met twice (a
repeated page, a window boundary) is then the same (ts, seq) and stored once, and an element that arrives later
with the time of an already stored sample is a new row, never dropped as a duplicate of it:

===============================  ==========================  ===========================
element                          value                       sample field
===============================  ==========================  ===========================
Location                         Latitude, Longitude         lat, lon
CumulativeOperatingHours         Hour                        engine_hours
FuelUsed                         FuelConsumed (FuelUnits)    fuel_used_l (litres)
EngineStatus / EngineCondition   Running                     engine_on
CumulativeIdleHours              Hour                        extra idle_hours
Distance                         Odometer (OdometerUnits)    extra odometer_km
FuelRemaining                    Percent                     extra fuel_remaining_pct
FaultCode(s)                     the code's fields           extra fault_codes (a list)
===============================  ==========================  ===========================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import orjson

FUEL_UNITS = {"litre": 1.0, "liter": 1.0, "litres": 1.0, "liters": 1.0, "l": 1.0, "gallon": 3.785411784,
              "gallons": 3.785411784, "gal": 3.785411784, "usgallon": 3.785411784}
DISTANCE_UNITS = {"kilometre": 1.0, "kilometer": 1.0, "kilometres": 1.0, "kilometers": 1.0, "km": 1.0,
                  "mile": 1.609344, "miles": 1.609344, "mi": 1.609344, "metre": 0.001, "meter": 0.001, "m": 0.001}
RUNNING_WORDS = {"true": True, "false": False, "running": True, "on": True, "off": False, "stopped": False,
                 "1": True, "0": False}


class FeedFormatError(ValueError):
    """A document the reader cannot read at all (not JSON or XML, or no AEMP content)."""


@dataclass(frozen=True)
class Reading:
    """One data element of one machine: its time, its kind (FAMILY_BIT key) and the sample fields it gives."""

    at: datetime
    family: str
    values: dict[str, Any]


@dataclass
class Equipment:
    """One machine's readings from a document: its header ids and samples (contract sample dicts)."""

    equipment_id: str | None = None
    serial_number: str | None = None
    pin: str | None = None
    readings: list[Reading] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # elements that could not be read, one line each


@dataclass
class Document:
    """What one page says: its machines and the next page's URL, if any."""

    equipment: list[Equipment]
    next_url: str | None
    snapshot_time: datetime | None = None


# -- one tree for XML and JSON ------------------------------------------------------------------------

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


def _xml_tree(element: ElementTree.Element) -> Any:
    """An XML element as nested dicts; a tag seen twice under one parent becomes a list."""
    children = list(element)
    if not children and not element.attrib:
        return (element.text or "").strip()
    node: dict[str, Any] = {_local(k): v for k, v in element.attrib.items()}
    seen: dict[str, list[Any]] = {}
    for child in children:
        seen.setdefault(_local(child.tag), []).append(_xml_tree(child))
    for name, values in seen.items():
        node[name] = values[0] if len(values) == 1 else values
    text = (element.text or "").strip()
    if text and not children:
        node["#text"] = text
    return node


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def parse_tree(body: bytes) -> tuple[str, Any]:
    """(root name, tree) of a JSON or XML document; FeedFormatError if it is neither."""
    text = body.lstrip()
    if text[:1] in (b"{", b"["):
        try:
            doc = _lower_keys(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            raise FeedFormatError(f"not valid JSON: {str(exc)[:200]}") from None
        if isinstance(doc, dict) and len(doc) == 1:
            (name, inner), = doc.items()
            if isinstance(inner, dict | list):
                return name, inner
        return "", doc
    if text[:1] == b"<":
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as exc:
            raise FeedFormatError(f"not well-formed XML: {exc}") from None
        return _local(root.tag), _xml_tree(root)
    raise FeedFormatError("neither JSON nor XML")


# -- values -------------------------------------------------------------------------------------------

def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _scalar(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("#text", value.get("value"))
    return value


def _number(value: Any) -> float | None:
    value = _scalar(value)
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{str(value)[:40]!r} is not a number") from None
    return number


def parse_time(value: Any) -> datetime:
    """An AEMP datetime (RFC 3339, with Z, an offset, or none meaning UTC) as an aware datetime."""
    value = _scalar(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("has no datetime")
    text = value.strip().replace(" ", "T", 1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"datetime {value[:40]!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _running(value: Any) -> bool | None:
    value = _scalar(value)
    if isinstance(value, bool) or value is None:
        return value
    word = str(value).strip().lower()
    if word not in RUNNING_WORDS:
        raise ValueError(f"Running {str(value)[:40]!r} is not true/false")
    return RUNNING_WORDS[word]


def _unit(table: dict[str, float], given: Any, what: str) -> float:
    given = _scalar(given)
    if given is None or given == "":
        return 1.0
    factor = table.get(str(given).strip().lower().replace(" ", ""))
    if factor is None:
        raise ValueError(f"{what} {str(given)[:30]!r} is not a unit the reader knows ({', '.join(sorted(table))})")
    return factor


def _element_values(name: str, node: dict[str, Any]) -> dict[str, Any]:
    """The sample fields one data element gives."""
    if name == "location":
        return {"lat": _number(node.get("latitude")), "lon": _number(node.get("longitude"))}
    if name == "cumulativeoperatinghours":
        return {"engine_hours": _number(node.get("hour"))}
    if name == "cumulativeidlehours":
        return {"idle_hours": _number(node.get("hour"))}
    if name in ("fuelused",):
        litres = _number(node.get("fuelconsumed"))
        factor = _unit(FUEL_UNITS, node.get("fuelunits"), "FuelUnits")
        return {"fuel_used_l": None if litres is None else litres * factor}
    if name == "distance":
        odometer = _number(node.get("odometer"))
        factor = _unit(DISTANCE_UNITS, node.get("odometerunits"), "OdometerUnits")
        return {"odometer_km": None if odometer is None else odometer * factor}
    if name in ("enginestatus", "enginecondition"):
        return {"engine_on": _running(node.get("running", node.get("enginecondition")))}
    if name == "fuelremaining":
        return {"fuel_remaining_pct": _number(node.get("percent"))}
    if name in ("faultcode", "faultcodes"):
        code = {k: _scalar(v) for k, v in node.items() if k != "datetime" and not isinstance(_scalar(v), dict)}
        return {"fault_code": code} if code else {}
    return {}


ELEMENTS = ("location", "cumulativeoperatinghours", "cumulativeidlehours", "fuelused", "distance", "enginestatus",
            "enginecondition", "fuelremaining", "faultcode", "faultcodes")
# Each kind of data element is one bit of a merged sample's ``seq`` (see the module docstring).
FAMILY_BIT = {"location": 1, "cumulativeoperatinghours": 2, "cumulativeidlehours": 4, "fuelused": 8, "distance": 16,
              "enginestatus": 32, "enginecondition": 32, "fuelremaining": 64, "faultcode": 128, "faultcodes": 128}
# time-series containers (``Locations``, ``OperatingHours``...) hold a list of one element kind
CONTAINERS = {"locations": "location", "operatinghours": "cumulativeoperatinghours",
              "cumulativeoperatinghours": "cumulativeoperatinghours", "idleoperatinghours": "cumulativeidlehours",
              "cumulativeidlehours": "cumulativeidlehours", "fuelused": "fuelused", "distance": "distance",
              "enginecondition": "enginecondition", "faultcodes": "faultcode", "faultcode": "faultcode"}


def _readings(holder: dict[str, Any], equipment: Equipment) -> None:
    """Every known data element in ``holder`` as a Reading (an unreadable one as a problem line)."""
    for name in ELEMENTS:
        for node in _as_list(holder.get(name)):
            if not isinstance(node, dict):
                continue
            if name == "faultcodes" and "faultcode" in node:  # <FaultCodes><FaultCode .../></FaultCodes>
                for inner in _as_list(node["faultcode"]):
                    if isinstance(inner, dict):
                        _add(equipment, "faultcode", inner)
                continue
            _add(equipment, name, node)


def _add(equipment: Equipment, name: str, node: dict[str, Any]) -> None:
    try:
        at = parse_time(node.get("datetime"))
        values = {k: v for k, v in _element_values(name, node).items() if v is not None}
    except ValueError as exc:
        equipment.problems.append(f"{name}: {exc}")
        return
    if values:
        family = "faultcode" if name == "faultcodes" else "enginestatus" if name == "enginecondition" else name
        equipment.readings.append(Reading(at, family, values))


def merge(readings: list[Reading]) -> list[dict[str, Any]]:
    """Contract samples, one per time: the readings' fields, ``seq`` the bits of their kinds, faults as a list."""
    by_time: dict[datetime, dict[str, Any]] = {}
    for reading in sorted(readings, key=lambda r: r.at):
        sample = by_time.setdefault(reading.at, {"ts": reading.at.isoformat(), "seq": 0})
        sample["seq"] |= FAMILY_BIT[reading.family]
        if "fault_code" in reading.values:
            sample.setdefault("fault_codes", []).append(reading.values["fault_code"])
        else:
            sample.update(reading.values)
    return list(by_time.values())


def _header(node: dict[str, Any], equipment: Equipment) -> None:
    header = node.get("equipmentheader")
    if isinstance(header, dict):
        equipment.equipment_id = _text(header.get("equipmentid"))
        equipment.serial_number = _text(header.get("serialnumber"))
        equipment.pin = _text(header.get("pin"))


def _text(value: Any) -> str | None:
    value = _scalar(value)
    return None if value is None or value == "" else str(value).strip()


def _next_link(node: dict[str, Any]) -> str | None:
    for link in _as_list(node.get("links")):
        if isinstance(link, dict):
            inner = link.get("link")
            for candidate in _as_list(inner) if inner is not None else [link]:
                if isinstance(candidate, dict) and str(_scalar(candidate.get("rel")) or "").lower() == "next":
                    href = _text(candidate.get("href"))
                    if href:
                        return href
    return None


def read_document(body: bytes) -> Document:
    """A fleet snapshot page, one machine's snapshot, or a time-series page, as machines with samples."""
    root, tree = parse_tree(body)
    if isinstance(tree, list):
        if not all(isinstance(item, dict) for item in tree):
            raise FeedFormatError("is an array of something other than Equipment objects")
        tree = {"equipment": tree}
    if not isinstance(tree, dict):
        raise FeedFormatError("has no AEMP content")
    if root in ("fleet", "equipment") or "equipment" in tree or "fleet" in tree:
        fleet = tree.get("fleet", tree) if root != "equipment" else {"equipment": tree}
        if not isinstance(fleet, dict):
            raise FeedFormatError("Fleet is not an object")
        machines = []
        for node in _as_list(fleet.get("equipment")):
            if isinstance(node, dict):
                equipment = Equipment()
                _header(node, equipment)
                _readings(node, equipment)
                machines.append(equipment)
        snapshot = fleet.get("snapshottime", tree.get("snapshottime"))
        try:
            snapshot_time = parse_time(snapshot) if snapshot is not None else None
        except ValueError:
            snapshot_time = None
        return Document(machines, _next_link(fleet), snapshot_time)
    container = CONTAINERS.get(root)
    equipment = Equipment()
    _header(tree, equipment)
    if container is not None and container not in tree:
        tree = {**tree, container: tree.get(root, [])}
    _readings(tree, equipment)
    if not equipment.readings and not equipment.problems and not any(k in tree for k in ELEMENTS):
        raise FeedFormatError(f"root {root or '(none)'!r} is neither a Fleet nor a time series the reader knows")
    return Document([equipment], _next_link(tree))
