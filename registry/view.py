"""The composed site view: site geometry, machines' last values, one card per enabled service, open alerts.

Everything here reads bounded data so the view stays flat as history grows: the site file
(cached per version), ``machine_last`` (one row per machine, upserted by ingest), each
service's card (the service decides how it reads its own tables) and the open-alerts index.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg

from ingest.fleet import site_fleet
from microservices.cards import load_card_context
from microservices.sdk import Card, CardContext, Service, SiteCache, SiteView, card_of
from registry.enablement import InvalidSettings, effective_settings, site_enablements
from sitepulse.sitefile import SiteConfig
from sitepulse.sites import stored_site

log = logging.getLogger(__name__)

# Colour hints per zone type (the UI may override); chosen to read on a light map and for colour-blind users
# (load/dump differ in lightness as well as hue).
ZONE_COLOURS = {"load": "#f2b134", "dump": "#8c6239", "road": "#b0b7bf", "parking": "#4f8fe6",
                "restricted": "#d7263d", "workshop": "#7e57c2"}
STALE_AFTER_S = 120.0  # a machine silent this long is shown as stale (SitePulse default)
MOVING_KMH = 1.0  # at or above: moving (positioning's default threshold)
OPEN_ALERTS_SHOWN = 50
_SITE_CACHE: dict[tuple[str, datetime], tuple[SiteConfig, dict[str, Any]]] = {}

ALERT_COLUMNS = ("id", "service", "key", "level", "at", "machine_id", "zone", "message", "data", "created_at",
                 "cleared_at", "escalation_level")
OPEN_ALERTS_SQL = (f"SELECT {', '.join(ALERT_COLUMNS)} FROM service_alerts WHERE site_id = %(site)s"
                   " AND acknowledged_at IS NULL ORDER BY created_at DESC, id DESC LIMIT %(limit)s")


_AS_IS = frozenset({str, int, bool, type(None)})


def plain(value: Any) -> Any:
    """JSON-ready copy of card data: numpy scalars as Python, NaN/NaT as null, times as RFC 3339."""
    kind = type(value)
    if kind in _AS_IS:  # the common leaves first: a card's data is mostly these
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray | pd.Series):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NaT or value is None:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def load_site_config(conn: psycopg.Connection, site_id: str) -> tuple[SiteConfig, dict[str, Any]] | None:
    """The parsed site file and its geometry, built once per stored version (projections are not free)."""
    stored = stored_site(conn, site_id)
    if stored is None:
        return None
    key = (site_id, stored.updated_at)
    cached = _SITE_CACHE.get(key)
    if cached is None:
        if len(_SITE_CACHE) > 256:
            _SITE_CACHE.clear()
        site = SiteConfig.model_validate(stored.config)
        cached = _SITE_CACHE[key] = (site, site_geometry(site_id, stored.name, site))
    return cached


def _xy(site: SiteConfig, points: list) -> list[list[float]]:
    lons, lats = zip(*points, strict=True)
    x, y = site.frame.to_xy(list(lons), list(lats))
    return [[round(float(a), 2), round(float(b), 2)] for a, b in zip(x, y, strict=True)]


def site_geometry(site_id: str, name: str, site: SiteConfig) -> dict[str, Any]:
    """Zones and paths in lon/lat and local metres (x east, y north), a colour per zone type, and bounds."""
    zones = [{"id": z.id, "type": z.type.value, "name": z.name or z.id, "speed_limit_kmh": z.speed_limit_kmh,
              "colour": ZONE_COLOURS.get(z.type.value, "#999999"), "polygon": [list(p) for p in z.polygon],
              "xy": _xy(site, z.polygon)} for z in site.zones]
    paths = [{"id": p.id, "name": p.name or p.id, "speed_limit_kmh": p.speed_limit_kmh,
              "points": [list(q) for q in p.points], "xy": _xy(site, p.points)} for p in site.paths]
    xs = [pt[0] for item in zones for pt in item["xy"]] + [pt[0] for item in paths for pt in item["xy"]]
    ys = [pt[1] for item in zones for pt in item["xy"]] + [pt[1] for item in paths for pt in item["xy"]]
    bounds = {"min_x": min(xs, default=-500.0), "min_y": min(ys, default=-500.0),
              "max_x": max(xs, default=500.0), "max_y": max(ys, default=500.0)}
    return {"id": site_id, "name": name or site_id, "timezone": site.timezone,
            "origin": {"lat": site.frame.origin_lat, "lon": site.frame.origin_lon},
            "zones": zones, "paths": paths, "bounds": bounds,
            "shifts": [{"name": s.name, "start": s.start.isoformat("minutes"), "end": s.end.isoformat("minutes")}
                       for s in site.shifts]}


def time_ranges(site: SiteConfig, now: datetime) -> dict[str, Any]:
    """Today and the current and previous shifts, in UTC, computed in the site's time zone for the range picker."""
    tz = ZoneInfo(site.timezone)
    local = now.astimezone(tz)
    midnight = datetime.combine(local.date(), datetime.min.time(), tz)
    spans = []
    for day in (local.date() - timedelta(days=1), local.date()):
        for shift in site.shifts:
            spans.append(_shift_span(shift.name, day, shift.start, shift.end, tz))
    started = sorted((s for s in spans if s["from"] <= now), key=lambda s: s["from"], reverse=True)[:2]
    return {"now": now, "today": {"from": midnight.astimezone(ZoneInfo("UTC")), "to": now},
            "shifts": [{**s, "label": f"{s['name']} {s['date']}", "to": min(s["to"], now)} for s in started]}


def _shift_span(name: str, day: date, start: Any, end: Any, tz: ZoneInfo) -> dict[str, Any]:
    begin = datetime.combine(day, start, tz)
    finish = datetime.combine(day + timedelta(days=1) if end <= start else day, end, tz)
    utc = ZoneInfo("UTC")
    return {"name": name, "date": day.isoformat(), "from": begin.astimezone(utc), "to": finish.astimezone(utc)}


def machine_state(engine_on: Any, speed_kmh: Any) -> str:
    """moving / idle / off from the last values (unknown when the device never said)."""
    if engine_on is False:
        return "off"
    if speed_kmh is not None and math.isfinite(speed_kmh) and speed_kmh >= MOVING_KMH:
        return "moving"
    if engine_on is None and speed_kmh is None:
        return "unknown"
    return "idle"


def site_machines(conn: psycopg.Connection, site_id: str, site: SiteConfig | None,
                  now: datetime, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every machine of the site with its last position (lon/lat and local x/y), state, speed and payload
    (``rows``: ``ingest.fleet.site_fleet``'s, when already read)."""
    rows = site_fleet(conn, site_id) if rows is None else rows
    declared = {m.id: m for m in site.machines} if site else {}
    if rows and site is not None:
        lon = np.array([r["lon"] if r["lon"] is not None else np.nan for r in rows], dtype=float)
        lat = np.array([r["lat"] if r["lat"] is not None else np.nan for r in rows], dtype=float)
        x, y = site.frame.to_xy(lon, lat)
    else:
        x = y = np.full(len(rows), np.nan)
    out = []
    for i, r in enumerate(rows):
        spec = declared.get(r["machine_id"])
        kind = r["kind"] if r["kind"] not in (None, "other") else (spec.kind.value if spec else r["kind"] or "other")
        rated = r["rated_payload_kg"] or (spec.rated_payload_kg if spec else None)
        payload = r["payload_kg"]
        age = (now - r["ts"]).total_seconds() if r["ts"] is not None else None
        out.append({
            "machine_id": r["machine_id"], "kind": kind, "model": r["model"] or (spec.model if spec else ""),
            "lat": r["lat"], "lon": r["lon"], "x": plain(round(float(x[i]), 2)), "y": plain(round(float(y[i]), 2)),
            "speed_kmh": plain(r["speed_kmh"]), "heading_deg": plain(r["heading_deg"]),
            "state": machine_state(r["engine_on"], r["speed_kmh"]), "engine_on": r["engine_on"],
            "payload_kg": plain(payload), "rated_payload_kg": rated,
            "payload_pct": round(100 * payload / rated, 1) if payload is not None and rated else None,
            "last_seen": r["ts"], "stale": age is None or age > STALE_AFTER_S, "status": r["status"],
        })
    return out


def open_alerts(conn: psycopg.Connection, site_id: str, limit: int = OPEN_ALERTS_SHOWN) -> list[dict[str, Any]]:
    """The newest unacknowledged alerts of the site (partial index on open alerts)."""
    rows = conn.execute(OPEN_ALERTS_SQL, {"site": site_id, "limit": limit}).fetchall()
    return [dict(zip(ALERT_COLUMNS, row, strict=True)) for row in rows]


_SITE_VIEWS: SiteCache[SiteView] = SiteCache()


def card_context(conn: psycopg.Connection, site_id: str, site: SiteConfig | None, now: datetime,
                 fleet: list[dict[str, Any]] | None = None) -> CardContext:
    """What every card of one page gets, from what the page already loaded: the site file (its plugin view built
    once per file), the births among ``fleet`` (``ingest.fleet.site_fleet`` rows; read when not given)."""
    view = _SITE_VIEWS.get(site, lambda: SiteView.of(site))
    births = None if fleet is None else [(r["machine_id"], r["kind"], r["model"], r["rated_payload_kg"])
                                         for r in fleet if r["kind"] is not None]  # None: reporting, never born
    return load_card_context(conn, site_id, "", site=view, births=births, now=now)


# A card is a plugin's code: these are the failures one card may have without taking the page down.
CARD_ERRORS = (psycopg.Error, InvalidSettings, ValueError, LookupError, TypeError, ArithmeticError, AttributeError)


def service_card(conn: psycopg.Connection, context: CardContext, service: Service, stored: dict[str, Any] | None
                 ) -> dict[str, Any]:
    """One service's card as plain data; a failing card is returned as unavailable with the reason."""
    site_id = context.site_id
    base = f"/api/v1/sites/{site_id}/{service.name}"
    try:
        with conn.transaction():  # a failed query must not abort the rest of the view
            settings = effective_settings(service, stored or {})
            card = card_of(service, context.for_service(service.name), settings)
    except CARD_ERRORS as exc:
        log.warning("card of %s on site %s failed: %s", service.name, site_id, exc, exc_info=True)
        return {"service": service.name, "title": service.name, "metrics": [], "data": {}, "link": None,
                "status": "unavailable", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    if card is None:
        card = Card(title=service.name.replace("-", " ").capitalize())
    link = card.link
    if link is not None and not link.startswith(("/", "http://", "https://")):
        link = f"{base}/{link}"
    return {"service": service.name, "title": card.title, "metrics": plain(card.metrics), "data": plain(card.data),
            "link": link, "status": "ok", "reason": None}


def enabled_cards(conn: psycopg.Connection, context: CardContext, services: dict[str, Service]
                  ) -> list[dict[str, Any]]:
    """One card per installed service switched on for the site, in the catalogue's order."""
    switches = site_enablements(conn, context.site_id)
    return [service_card(conn, context, service, switches[name].settings)
            for name, service in services.items() if name in switches and switches[name].enabled]


def compose_view(conn: psycopg.Connection, site_id: str, services: dict[str, Service],
                 now: datetime) -> dict[str, Any]:
    """The whole site view (see ``GET /api/v1/sites/{site_id}/view``)."""
    loaded = load_site_config(conn, site_id)
    if loaded is None:
        raise LookupError(site_id)
    site, geometry = loaded
    fleet = site_fleet(conn, site_id)
    return {
        "site": geometry,
        "ranges": time_ranges(site, now),
        "machines": site_machines(conn, site_id, site, now, fleet),
        "cards": enabled_cards(conn, card_context(conn, site_id, site, now, fleet), services),
        "alerts": open_alerts(conn, site_id),
        "generated_at": now,
    }
