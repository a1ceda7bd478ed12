"""ISO 15143-3 (AEMP 2.0) fleet snapshots of SitePulse machines, so mixed-fleet tools can read SitePulse.

Element names follow docs/DOMAIN.md exactly. Values come from bounded reads: ``machine_last``
(location, hours, fuel counter, engine state) and, where the service runs on the machine's
site, weight loading's cycles (payload totals, load count, fuel in the last 24 h) and
positioning's activity (distance SitePulse observed, as the odometer element). An element
a machine has no data for is omitted, never sent as null.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import orjson
import psycopg

from registry.tokens import Principal

PAGE_SIZE = 100
ID_SEPARATOR = ":"  # EquipmentID = "{site_id}:{machine_id}"; neither id may contain ':'

_MACHINES = """
    SELECT coalesce(m.site_id, l.site_id) AS site_id, coalesce(m.machine_id, l.machine_id) AS machine_id,
           m.kind, m.model, m.attributes, m.updated_at, l.ts, l.lat, l.lon, l.position_ts, l.engine_hours,
           l.fuel_used_l, l.engine_on, s.config -> 'machines' AS declared
    FROM machines m FULL JOIN machine_last l ON l.site_id = m.site_id AND l.machine_id = m.machine_id
    LEFT JOIN sites s ON s.site_id = coalesce(m.site_id, l.site_id)
    WHERE (%(all)s OR coalesce(m.site_id, l.site_id) = ANY(%(sites)s))
      AND (%(site)s::text IS NULL OR (coalesce(m.site_id, l.site_id), coalesce(m.machine_id, l.machine_id))
           = (%(site)s, %(machine)s))
    ORDER BY 1, 2 LIMIT %(limit)s OFFSET %(offset)s"""
_COUNT = """
    SELECT count(*) FROM machines m FULL JOIN machine_last l ON l.site_id = m.site_id AND l.machine_id = m.machine_id
    WHERE (%(all)s OR coalesce(m.site_id, l.site_id) = ANY(%(sites)s))"""
_ENABLED = "SELECT site_id, service FROM service_enablement WHERE enabled AND site_id = ANY(%s)"
_PAYLOAD = """
    SELECT site_id, machine_id, sum(payload_kg), count(*), max(dumped_at) FROM weight_loading.cycles
    WHERE site_id = ANY(%(sites)s) AND machine_id = ANY(%(machines)s) GROUP BY 1, 2"""
_FUEL_24 = """
    SELECT site_id, machine_id, sum(fuel_l), max(hour) + interval '1 hour' FROM weight_loading.activity
    WHERE site_id = ANY(%(sites)s) AND machine_id = ANY(%(machines)s) AND hour >= %(since)s GROUP BY 1, 2"""
_DISTANCE = """
    SELECT site_id, machine_id, sum(distance_mm) / 1e6, max(minute) + interval '1 minute' FROM positioning.activity
    WHERE site_id = ANY(%(sites)s) AND machine_id = ANY(%(machines)s) GROUP BY 1, 2"""


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


def _rows(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[tuple]:
    with conn.transaction():  # a service's schema may be missing on a fresh database
        try:
            return conn.execute(query, params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def _service_extras(conn: psycopg.Connection, rows: list[dict[str, Any]], now: datetime
                    ) -> dict[tuple[str, str], dict[str, Any]]:
    """Payload totals, load counts, 24 h fuel and distance per machine, from services enabled on its site."""
    sites = sorted({r["site_id"] for r in rows})
    machines = sorted({r["machine_id"] for r in rows})
    enabled = {(s, name) for s, name in conn.execute(_ENABLED, (sites,)).fetchall()}
    params = {"sites": sites, "machines": machines, "since": now - timedelta(hours=24)}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if any(name == "weight-loading" for _, name in enabled):
        for site, machine, payload, loads, at in _rows(conn, _PAYLOAD, params):
            if (site, "weight-loading") in enabled:
                entry = out.setdefault((site, machine), {})
                entry["CumulativePayloadTotals"] = {"datetime": at, "PayloadUnits": "kilogram",
                                                    "Payload": round(float(payload), 1)}
                entry["CumulativeLoadCount"] = {"datetime": at, "Count": int(loads)}
        for site, machine, fuel, at in _rows(conn, _FUEL_24, params):
            if (site, "weight-loading") in enabled:
                out.setdefault((site, machine), {})["FuelUsedLast24"] = {
                    "datetime": min(at, now), "FuelUnits": "litre", "FuelConsumed": round(float(fuel), 2)}
    if any(name == "positioning" for _, name in enabled):
        for site, machine, km, at in _rows(conn, _DISTANCE, params):
            if (site, "positioning") in enabled:
                out.setdefault((site, machine), {})["_distance"] = {
                    "datetime": at, "OdometerUnits": "kilometre", "Odometer": round(float(km), 3)}
    return out


def fleet(conn: psycopg.Connection, principal: Principal, page: int, base_url: str,
          one: tuple[str, str] | None = None) -> dict[str, Any] | None:
    """One page of the caller's fleet (or one machine); None when the page or machine does not exist."""
    now = datetime.now(UTC)
    params = {"all": principal.is_admin, "sites": sorted(principal.sites), "site": one[0] if one else None,
              "machine": one[1] if one else None, "limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE}
    with conn.cursor() as cur:
        cur.execute(_MACHINES, params)
        names = [d.name for d in cur.description or []]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    total = len(rows) if one else conn.execute(_COUNT, params).fetchone()[0]
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
