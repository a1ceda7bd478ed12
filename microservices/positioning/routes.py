"""HTTP routes under /api/v1/sites/{site_id}/positioning/: live positions, zone events, machine summaries,
events (restricted entries and speeding) and a heat map; plus the live-map data the site-view card shows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query

from microservices.positioning.settings import PositioningSettings
from microservices.sdk import CardContext, MachineView
from microservices.sdk_routes import PageDep, ServiceRequest, ServiceRequestDep, TimeRangeDep, service_request
from sitepulse.sites import load_site

router = APIRouter()

MachineFilter = Annotated[str | None, Query(max_length=64, description="only this machine")]
ZoneFilter = Annotated[str | None, Query(max_length=64, description="only this zone id")]
PositioningRequestDep = Annotated[ServiceRequest[PositioningSettings], Depends(service_request)]  # with settings

# The live map reads positioning.track_last (one row per machine, kept by triggers on the track: see
# migrations/0002_track_last.sql), never the track history, so it stays flat as history grows.
# A machine's kind comes from the site's machines (site file and births: ServiceRequest.machines, CardContext.machines).
_LATEST = """
    SELECT machine_id, ts, lat, lon, raw_lat, raw_lon, heading_deg AS heading, speed_kmh, state, zone
    FROM positioning.track_last
    WHERE site_id = %(site)s AND (%(after)s::text IS NULL OR machine_id > %(after)s)
    ORDER BY machine_id"""


def _with_kind(row: dict[str, Any], machines: Mapping[str, MachineView]) -> dict[str, Any]:
    """The row with the machine's kind after its id ("other" for a machine the site does not know)."""
    known = machines.get(row["machine_id"])
    return {"machine_id": row["machine_id"], "kind": known.kind if known else "other", **row}


@router.get("/positions")
def positions(ctx: ServiceRequestDep, page: PageDep) -> dict[str, Any]:
    """Live map: each machine's last known cleaned position, speed, heading, state (moving/idle/off) and zone."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        rows = ctx.rows(f"{_LATEST} LIMIT %(limit)s", {"site": ctx.site_id, "after": after[0] if after else None,
                                                       "limit": limit})
        machines = ctx.machines() if rows else {}
        return [_with_kind(row, machines) for row in rows]

    return page.fetch(read, machine_id=str)


_ZONE_EVENTS = """
    SELECT * FROM (
        SELECT machine_id, zone, zone_type, entered_at, left_at, dwell_s FROM positioning.zone_visits
        WHERE site_id = %(site)s
        UNION ALL
        SELECT e.machine_id, e.zone, e.zone_type, e.entered_at, NULL::timestamptz, NULL::float8
        FROM positioning.zone_entries e
        WHERE e.site_id = %(site)s AND NOT EXISTS (
            SELECT 1 FROM positioning.zone_visits v WHERE v.site_id = e.site_id AND v.machine_id = e.machine_id
            AND v.zone = e.zone AND v.entered_at = e.entered_at)
    ) z
    WHERE (%(start)s::timestamptz IS NULL OR entered_at >= %(start)s)
      AND (%(end)s::timestamptz IS NULL OR entered_at < %(end)s)
      AND (%(machine)s::text IS NULL OR machine_id = %(machine)s)
      AND (%(zone)s::text IS NULL OR zone = %(zone)s)
      AND (%(after_at)s::timestamptz IS NULL OR (entered_at, machine_id, zone) > (%(after_at)s, %(after_m)s,
           %(after_z)s))
    ORDER BY entered_at, machine_id, zone LIMIT %(limit)s"""


@router.get("/zone-events")
def zone_events(ctx: ServiceRequestDep, page: PageDep, window: TimeRangeDep, machine_id: MachineFilter = None,
                zone: ZoneFilter = None) -> dict[str, Any]:
    """Zone visits by entry time: machine_id, zone, zone_type, entered_at, left_at (null while inside), dwell_s."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        return ctx.named(ctx.rows(_ZONE_EVENTS, {
            "site": ctx.site_id, "start": window.start, "end": window.end, "machine": machine_id, "zone": zone,
            "after_at": after[0] if after else None, "after_m": after[1] if after else None,
            "after_z": after[2] if after else None, "limit": limit}), "zone")

    return page.fetch(read, entered_at=datetime, machine_id=str, zone=str)


_EVENTS = """
    SELECT * FROM (
        SELECT 'restricted_entry' AS kind, machine_id, zone, entered_at AS at, NULL::timestamptz AS ended_at,
               NULL::float8 AS max_speed_kmh, NULL::float8 AS limit_kmh, 'critical' AS level
        FROM positioning.zone_entries WHERE site_id = %(site)s AND zone_type = 'restricted'
        UNION ALL
        SELECT 'speeding', machine_id, zone, started_at, ended_at, max_speed_kmh, limit_kmh, 'warning'
        FROM positioning.speeding WHERE site_id = %(site)s
    ) e
    WHERE (%(start)s::timestamptz IS NULL OR at >= %(start)s) AND (%(end)s::timestamptz IS NULL OR at < %(end)s)
      AND (%(machine)s::text IS NULL OR machine_id = %(machine)s)
      AND (%(after_at)s::timestamptz IS NULL OR (at, kind, machine_id) > (%(after_at)s, %(after_k)s, %(after_m)s))
    ORDER BY at, kind, machine_id LIMIT %(limit)s"""


@router.get("/events")
def events(ctx: ServiceRequestDep, page: PageDep, window: TimeRangeDep,
           machine_id: MachineFilter = None) -> dict[str, Any]:
    """Restricted-zone entries (critical) and speeding episodes (warning) by time."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        return ctx.named(ctx.rows(_EVENTS, {
            "site": ctx.site_id, "start": window.start, "end": window.end, "machine": machine_id,
            "after_at": after[0] if after else None, "after_k": after[1] if after else None,
            "after_m": after[2] if after else None, "limit": limit}), "zone")

    return page.fetch(read, at=datetime, kind=str, machine_id=str)


_SUMMARIES = """
    SELECT shift_date::text AS shift_date, shift, machine_id,
           min(minute) AS first_minute, max(minute) + interval '1 minute' AS last_minute,
           sum(distance_mm) / 1000.0 AS distance_m,
           sum(moving_ms) / 1000.0 AS moving_s, sum(idle_ms) / 1000.0 AS idle_s, sum(off_ms) / 1000.0 AS off_s,
           sum(load_ms) / 1000.0 AS load_s, sum(dump_ms) / 1000.0 AS dump_s, sum(road_ms) / 1000.0 AS road_s,
           sum(parking_ms) / 1000.0 AS parking_s, sum(restricted_ms) / 1000.0 AS restricted_s,
           sum(workshop_ms) / 1000.0 AS workshop_s, sum(none_ms) / 1000.0 AS no_zone_s
    FROM positioning.activity
    WHERE site_id = %(site)s
      AND (%(start)s::timestamptz IS NULL OR minute >= %(start)s)
      AND (%(end)s::timestamptz IS NULL OR minute < %(end)s)
      AND (%(machine)s::text IS NULL OR machine_id = %(machine)s)
    GROUP BY shift_date, shift, machine_id
    HAVING (%(after_d)s::text IS NULL OR (shift_date::text, shift, machine_id) > (%(after_d)s, %(after_s)s,
            %(after_m)s))
    ORDER BY shift_date, shift, machine_id LIMIT %(limit)s"""

ZONE_KEYS = ("load_s", "dump_s", "road_s", "parking_s", "restricted_s", "workshop_s", "no_zone_s")


@router.get("/machines")
def machines(ctx: ServiceRequestDep, page: PageDep, window: TimeRangeDep,
             machine_id: MachineFilter = None) -> dict[str, Any]:
    """Per machine and shift: distance, moving/idle/engine-off time and time per zone type (seconds)."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        rows = ctx.rows(_SUMMARIES, {
            "site": ctx.site_id, "start": window.start, "end": window.end, "machine": machine_id,
            "after_d": after[0] if after else None, "after_s": after[1] if after else None,
            "after_m": after[2] if after else None, "limit": limit})
        items = []
        for row in rows:
            zones = {key.removesuffix("_s"): float(row.pop(key) or 0) for key in ZONE_KEYS}
            item = {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}
            on = item["moving_s"] + item["idle_s"]
            item["idle_share"] = round(item["idle_s"] / on, 4) if on else None
            item["time_per_zone_type_s"] = zones
            items.append(item)
        return items

    return page.fetch(read, shift_date=str, shift=str, machine_id=str)


@router.get("/heatmap")
def heatmap(ctx: PositioningRequestDep, window: TimeRangeDep,
            cell_m: Annotated[float, Query(ge=1, le=1000, description="grid cell size in metres")] = 25.0,
            machine_id: MachineFilter = None) -> dict[str, Any]:
    """Where machines spent time: counts of cleaned track positions per grid cell of the site's local frame."""
    rows = ctx.rows("""
        SELECT floor(x_m / %(cell)s)::bigint AS ix, floor(y_m / %(cell)s)::bigint AS iy, count(*) AS positions
        FROM positioning.track
        WHERE site_id = %(site)s AND x_m IS NOT NULL
          AND (%(start)s::timestamptz IS NULL OR ts >= %(start)s) AND (%(end)s::timestamptz IS NULL OR ts < %(end)s)
          AND (%(machine)s::text IS NULL OR machine_id = %(machine)s)
        GROUP BY 1, 2 ORDER BY 1, 2""", {"site": ctx.site_id, "cell": cell_m, "start": window.start,
                                          "end": window.end, "machine": machine_id})
    site = load_site(ctx.conn, ctx.site_id)
    interval = ctx.settings.track_interval_s
    cells = []
    if rows:
        ix = np.array([r["ix"] for r in rows], dtype=float)
        iy = np.array([r["iy"] for r in rows], dtype=float)
        lon, lat = (site.frame.to_lonlat((ix + 0.5) * cell_m, (iy + 0.5) * cell_m) if site
                    else (np.full(len(rows), np.nan), np.full(len(rows), np.nan)))
        for row, lo, la in zip(rows, lon, lat, strict=True):
            cells.append({"ix": row["ix"], "iy": row["iy"], "positions": row["positions"],
                          "seconds": row["positions"] * interval,
                          "lon": round(float(lo), 7) if np.isfinite(lo) else None,
                          "lat": round(float(la), 7) if np.isfinite(la) else None})
    origin = {"lat": site.frame.origin_lat, "lon": site.frame.origin_lon} if site else None
    return {"origin": origin, "cell_m": cell_m, "crs": "local transverse Mercator, metres east/north of origin",
            "cells": cells}


_TRACK_COLUMNS = ("machine_id", "ts", "lat", "lon", "heading", "speed_kmh", "state", "zone")


def live_map(ctx: CardContext) -> dict[str, Any]:
    """Zones (id, type, name, lon/lat polygon) and machines (last position, heading, speed, state, zone)."""
    zones = [{"id": z.id, "type": z.type, "name": z.name, "speed_limit_kmh": z.speed_limit_kmh,
              "polygon": [list(p) for p in z.polygon]} for z in ctx.site.zones.values()]
    latest = ctx.read(_LATEST, {"site": ctx.site_id, "after": None})
    machines = []
    if not latest.empty:
        columns = [latest[c].astype(object).tolist() if c == "ts" else latest[c].tolist() for c in _TRACK_COLUMNS]
        machines = [_with_kind(dict(zip(_TRACK_COLUMNS, values, strict=True)), ctx.machines)
                    for values in zip(*columns, strict=True)]
    return {"zones": zones, "machines": machines}
