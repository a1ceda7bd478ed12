"""ISO 15143-3 (AEMP 2.0) fleet snapshots of SitePulse machines, so mixed-fleet tools can read SitePulse.

Element names follow docs/DOMAIN.md exactly. Values come from bounded reads, each through its owner's
functions: ingest's fleet (births, and location, hours, fuel counter, engine state from ``machine_last``),
the site files' declared machines and, where the service runs on the machine's site, weight loading's
(payload totals, load count, fuel in the last 24 h) and positioning's (distance SitePulse observed, as
the odometer element). An element
a machine has no data for is omitted, never sent as null.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import orjson
import psycopg

from ingest.fleet import fleet_page, fleet_size
from microservices.positioning import fleet as positioning
from microservices.weight_loading import fleet as weight_loading
from registry.enablement import enablements_for_sites
from registry.tokens import Principal
from sitepulse.sites import declared_machines

PAGE_SIZE = 100
ID_SEPARATOR = ":"  # EquipmentID = "{site_id}:{machine_id}"; neither id may contain ':'

def equipment_id(site_id: str, machine_id: str) -> str:
    return f"{site_id}{ID_SEPARATOR}{machine_id}"


def _header(row: dict[str, Any]) -> dict[str, Any]:
    attributes = row["attributes"] or {}
    declared = next((m for m in row["declared"] or [] if m.get("id") == row["machine_id"]), {})
    model = row["model"] or declared.get("model") or ""
    oem = attributes.get("oem") or attributes.get("make") or declared.get("oem") or declared.get("make")
    if not oem and " " in model:  # "Volvo A30G": maker, then model
        oem, model = model.split(" ", 1)
    header: dict[str, Any] = {"OEMName": oem, "Model": model or None,
                              "EquipmentID": equipment_id(row["site_id"], row["machine_id"]),
                              "SerialNumber": attributes.get("serial_number") or declared.get("serial_number"),
                              "PIN": attributes.get("pin") or declared.get("pin")}
    # birth attributes are whatever JSON a device sent: a list or an object is shown as its text, never as
    # elements named by the device
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in header.items() if v not in (None, "")}


def _equipment(row: dict[str, Any], extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = {"EquipmentHeader": _header(row)}
    if row["lat"] is not None and row["lon"] is not None:
        # 7 decimals (1.1 cm): the resolution OEM feeds give, not the stored binary grid's digits
        item["Location"] = {"datetime": row["position_ts"] or row["ts"], "Latitude": round(row["lat"], 7),
                            "Longitude": round(row["lon"], 7)}
    if row["engine_hours"] is not None:
        item["CumulativeOperatingHours"] = {"datetime": row["ts"], "Hour": round(row["engine_hours"], 2)}
    if row["distance"] is not None:
        item["Distance"] = row["distance"]
    if row["engine_on"] is not None:
        item["EngineStatus"] = {"datetime": row["ts"], "Running": bool(row["engine_on"])}
    if row["fuel_used_l"] is not None:
        item["FuelUsed"] = {"datetime": row["ts"], "FuelUnits": "litre", "FuelConsumed": round(row["fuel_used_l"], 2)}
    item.update(extra)
    return item


def _rows(read: Callable[..., list[tuple]], *args: Any) -> list[tuple]:
    """A service's answer, or none where its schema is missing (a fresh database)."""
    conn = args[0]
    with conn.transaction():
        try:
            return read(*args)
        except psycopg.errors.UndefinedTable:
            return []


def _service_extras(conn: psycopg.Connection, rows: list[dict[str, Any]], now: datetime
                    ) -> dict[tuple[str, str], dict[str, Any]]:
    """Payload totals, load counts, 24 h fuel and distance per machine, from services enabled on its site."""
    sites = sorted({r["site_id"] for r in rows})
    machines = sorted({r["machine_id"] for r in rows})
    enabled = {(e.site_id, e.service) for e in enablements_for_sites(conn, sites) if e.enabled}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if any(name == "weight-loading" for _, name in enabled):
        for site, machine, payload, loads, at in _rows(weight_loading.payload_totals, conn, sites, machines):
            if (site, "weight-loading") in enabled:
                entry = out.setdefault((site, machine), {})
                entry["CumulativePayloadTotals"] = {"datetime": at, "PayloadUnits": "kilogram",
                                                    "Payload": round(float(payload), 1)}
                entry["CumulativeLoadCount"] = {"datetime": at, "Count": int(loads)}
        for site, machine, fuel, at in _rows(weight_loading.fuel_since, conn, sites, machines,
                                             now - timedelta(hours=24)):
            if (site, "weight-loading") in enabled:
                out.setdefault((site, machine), {})["FuelUsedLast24"] = {
                    "datetime": min(at, now), "FuelUnits": "litre", "FuelConsumed": round(float(fuel), 2)}
    if any(name == "positioning" for _, name in enabled):
        for site, machine, km, at in _rows(positioning.distances_km, conn, sites, machines):
            if (site, "positioning") in enabled:
                out.setdefault((site, machine), {})["_distance"] = {
                    "datetime": at, "OdometerUnits": "kilometre", "Odometer": round(float(km), 3)}
    return out


def fleet(conn: psycopg.Connection, principal: Principal, page: int, base_url: str,
          one: tuple[str, str] | None = None) -> dict[str, Any] | None:
    """One page of the caller's fleet (or one machine); None when the page or machine does not exist."""
    now = datetime.now(UTC)
    sites = None if principal.is_admin else sorted(principal.sites)
    rows = fleet_page(conn, sites, PAGE_SIZE, (page - 1) * PAGE_SIZE, one)
    declared = declared_machines(conn, sorted({r["site_id"] for r in rows}))
    for row in rows:
        row["declared"] = declared.get(row["site_id"], [])
    total = len(rows) if one else fleet_size(conn, sites)
    last = max(1, -(-total // PAGE_SIZE))
    if (one and not rows) or page > last:
        return None
    extras = _service_extras(conn, rows, now) if rows else {}
    equipment = []
    for row in rows:
        extra = dict(extras.get((row["site_id"], row["machine_id"]), {}))
        row["distance"] = extra.pop("_distance", None)
        equipment.append(_equipment(row, extra))
    if one:
        return {"Equipment": equipment[0], "SnapshotTime": now}
    links = [{"Rel": "self", "Href": f"{base_url}aemp/Fleet/{page}"}]
    if page < last:
        links.append({"Rel": "next", "Href": f"{base_url}aemp/Fleet/{page + 1}"})
    links.append({"Rel": "last", "Href": f"{base_url}aemp/Fleet/{last}"})
    return {"Fleet": {"SnapshotTime": now, "Links": links, "Equipment": equipment}}


# Characters XML 1.0 cannot hold at all, escaped or not: C0 controls but tab/LF/CR, lone surrogates, U+FFFE/F.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: Any) -> str:
    """A value as XML text; a character XML cannot carry (a device may send ``\\u0001``) becomes U+FFFD."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _append(parent: ElementTree.Element, name: str, value: Any) -> None:
    """A value as element ``name``; a list as that element repeated; ``datetime`` keys as attributes."""
    if isinstance(value, list):
        for item in value:
            _append(parent, name, item)
        return
    element = ElementTree.SubElement(parent, name)
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "datetime":
                element.set("datetime", _text(child))
            else:
                _append(element, key, child)
    else:
        element.text = _text(value)


def to_xml(body: dict[str, Any]) -> bytes:
    """The snapshot as XML: the same element names, ``datetime`` as an attribute."""
    holder = ElementTree.Element("holder")
    if "Fleet" in body:
        _append(holder, "Fleet", body["Fleet"])
    else:
        _append(holder, "Equipment", body["Equipment"])
        holder[0].set("snapshotTime", _text(body["SnapshotTime"]))
    return ElementTree.tostring(holder[0], encoding="utf-8", xml_declaration=True)
