"""Value capture: what each customer used, per site and service over a period, in a form a provider can price.

Per (customer, site, service) over ``[from, to)``: the days it was used, distinct users, route
calls, card views, exports and alert acknowledgements (usage events), alerts delivered and
acknowledged (``service_alerts``), machines covered (machines that sent telemetry to the site
while the service was on during the period) and the work handled (the service's declared
``volume`` KPI summed over the period, e.g. tonnes). A (site, service) appears when the service
was on for the site at some time in the period, or was used or alerted in it.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import psycopg

from ingest.reader import machines_covered
from microservices.sdk import Service
from registry.sharing import customers
from registry.spreadsheet import InertCsvWriter
from registry.usage import ADOPTION_ACTIONS
from sitepulse.errors import SitePulseError

NO_CUSTOMER = "(no customer)"

_EVENTS = """
SELECT site_id, service,
    count(DISTINCT (at AT TIME ZONE 'UTC')::date) FILTER (WHERE action = ANY(%(adopt)s)),
    count(DISTINCT principal) FILTER (WHERE action = ANY(%(adopt)s)),
    count(*) FILTER (WHERE action = 'api_call'),
    count(*) FILTER (WHERE action = 'card_view'),
    count(*) FILTER (WHERE action = 'export'),
    count(*) FILTER (WHERE action = 'alert_ack')
FROM usage_events
WHERE at >= %(start)s AND at < %(end)s AND service IS NOT NULL AND (%(all)s OR site_id = ANY(%(sites)s))
GROUP BY site_id, service
"""

_ALERTS = """
SELECT site_id, service,
    count(*) FILTER (WHERE published_at >= %(start)s AND published_at < %(end)s),
    count(*) FILTER (WHERE acknowledged_at >= %(start)s AND acknowledged_at < %(end)s)
FROM service_alerts
WHERE (published_at >= %(start)s AND published_at < %(end)s
       OR acknowledged_at >= %(start)s AND acknowledged_at < %(end)s)
  AND (%(all)s OR site_id = ANY(%(sites)s))
GROUP BY site_id, service
"""

_SWITCHED_ON = """
SELECT site_id, service, enabled_at FROM service_enablement
WHERE enabled_at IS NOT NULL AND enabled_at < %(end)s AND (enabled OR updated_at >= %(start)s)
  AND (%(all)s OR site_id = ANY(%(sites)s))
"""

COUNTS = ("active_days", "distinct_users", "calls", "card_views", "exports", "alert_acks")
CSV_COLUMNS = ("customer", "site_id", "service", "from", "to", *COUNTS, "alerts_delivered", "alerts_acknowledged",
               "machines_covered", "volume_name", "volume", "volume_unit")


def check_period(start: datetime, end: datetime) -> None:
    """A period is two time-zone-aware times, ``from`` before ``to``."""
    if start.tzinfo is None or end.tzinfo is None:
        raise SitePulseError("from and to must carry a time zone, e.g. 2026-11-01T00:00:00Z")
    if end <= start:
        raise SitePulseError("to must be after from")


def _volume(conn: psycopg.Connection, service: Service, site_id: str, start: datetime,
            end: datetime) -> float | None:
    if service.volume is None:
        return None
    with conn.transaction():
        rows = service.volume.daily(conn, site_id, start, end)
    return float(sum(float(value) for _, value in rows if value is not None))


def usage_report(conn: psycopg.Connection, services: dict[str, Service], start: datetime, end: datetime,
                 sites: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (customer, site, service) used or switched on in ``[start, end)``, sorted that way."""
    check_period(start, end)
    params = {"start": start, "end": end, "all": sites is None, "sites": sites or [],
              "adopt": list(ADOPTION_ACTIONS)}
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(site_id: str, service: str) -> dict[str, Any]:
        return rows.setdefault((site_id, service), {
            **dict.fromkeys(COUNTS, 0), "alerts_delivered": 0, "alerts_acknowledged": 0, "enabled_at": None})

    with conn.transaction():
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        for site_id, service, enabled_at in conn.execute(_SWITCHED_ON, params):
            row(site_id, service)["enabled_at"] = enabled_at
        for site_id, service, *counts in conn.execute(_EVENTS, params):
            row(site_id, service).update(zip(COUNTS, counts, strict=True))
        for site_id, service, delivered, acknowledged in conn.execute(_ALERTS, params):
            row(site_id, service).update(alerts_delivered=delivered, alerts_acknowledged=acknowledged)
        owners = customers(conn, sorted({site for site, _ in rows}))
        items = []
        for (site_id, name), counts in rows.items():
            service = services.get(name)
            enabled_at = counts.pop("enabled_at")
            covered_from = max(start, enabled_at) if enabled_at else start
            volume = _volume(conn, service, site_id, start, end) if service else None
            items.append({
                "customer": owners.get(site_id, NO_CUSTOMER), "site_id": site_id, "service": name,
                "from": start, "to": end, **counts,
                "machines_covered": machines_covered(conn, site_id, covered_from, end),
                "volume": None if volume is None else {"name": service.volume.name, "value": volume,
                                                       "unit": service.volume.unit},
            })
    return sorted(items, key=lambda i: (i["customer"], i["site_id"], i["service"]))


def by_customer(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Totals per customer: sites, services, and the summed counts and volumes (per unit)."""
    totals: dict[str, dict[str, Any]] = {}
    for item in items:
        total = totals.setdefault(item["customer"], {"customer": item["customer"], "sites": set(), "services": set(),
                                                     **dict.fromkeys(("calls", "card_views", "exports", "alert_acks",
                                                                      "alerts_delivered"), 0), "volume": {}})
        total["sites"].add(item["site_id"])
        total["services"].add(item["service"])
        for key in ("calls", "card_views", "exports", "alert_acks", "alerts_delivered"):
            total[key] += item[key]
        if item["volume"]:
            unit = item["volume"]["unit"]
            total["volume"][unit] = total["volume"].get(unit, 0.0) + item["volume"]["value"]
    return [{**t, "sites": sorted(t["sites"]), "services": sorted(t["services"])} for t in totals.values()]


def usage_csv(items: list[dict[str, Any]]) -> str:
    """The report as CSV, one row per (customer, site, service)."""
    buffer = io.StringIO()
    writer = InertCsvWriter(buffer)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        volume = item["volume"] or {}
        writer.writerow([
            item["customer"], item["site_id"], item["service"], _iso(item["from"]), _iso(item["to"]),
            *(item[c] for c in COUNTS), item["alerts_delivered"], item["alerts_acknowledged"],
            item["machines_covered"], volume.get("name", ""), "" if not volume else f"{volume['value']:.6g}",
            volume.get("unit", "")])
    return buffer.getvalue()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
