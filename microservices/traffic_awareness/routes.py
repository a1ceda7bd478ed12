"""HTTP routes under /api/v1/sites/{site_id}/traffic-awareness/: proximity events, queues (list, summary per zone
and shift, length over time), loader idle time, congestion per road segment and hauler re-allocation advice;
plus the data of the site-view card."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Query

from microservices.sdk import Card, CardContext
from microservices.sdk_routes import PageDep, ServiceRequest, ServiceRequestDep, TimeRangeDep, service_request
from microservices.traffic_awareness.queueing import QueueModel, finite_source_queue
from microservices.traffic_awareness.roads import Layout, congested_runs
from microservices.traffic_awareness.settings import TrafficSettings
from sitepulse.sites import load_site

router = APIRouter()

MachineFilter = Annotated[str | None, Query(max_length=64, description="only encounters/queues of this machine")]
ZoneFilter = Annotated[str | None, Query(max_length=64, description="only this zone id")]
LevelFilter = Annotated[str | None, Query(pattern="^(warning|critical)$", description="warning or critical")]
TrafficRequestDep = Annotated[ServiceRequest[TrafficSettings], Depends(service_request)]  # with the site's settings

_EVENTS = """
    SELECT machine_a, machine_b, at, min_distance_m, min_ttc_s, level, started_at, ended_at, max_closing_kmh,
           lat, lon, zone
    FROM traffic_awareness.encounters
    WHERE site_id = %(site)s
      AND (%(start)s::timestamptz IS NULL OR at >= %(start)s) AND (%(end)s::timestamptz IS NULL OR at < %(end)s)
      AND (%(machine)s::text IS NULL OR machine_a = %(machine)s OR machine_b = %(machine)s)
      AND (%(level)s::text IS NULL OR level = %(level)s)
      AND (%(after_at)s::timestamptz IS NULL OR (at, machine_a, machine_b) > (%(after_at)s, %(after_a)s, %(after_b)s))
    ORDER BY at, machine_a, machine_b LIMIT %(limit)s"""


def read_encounters(read: Callable[[str, Mapping[str, Any]], pd.DataFrame], site_id: str, start: datetime,
                    end: datetime, limit: int = 10_000) -> pd.DataFrame:
    """Close encounters in [start, end) by time of closest approach, as ``/proximity-events`` lists them (for the
    registry's playback, which reads this service's tables only through it)."""
    return read(_EVENTS, {"site": site_id, "start": start, "end": end, "machine": None, "level": None,
                          "after_at": None, "after_a": None, "after_b": None, "limit": limit})


@router.get("/proximity-events")
def proximity_events(ctx: ServiceRequestDep, page: PageDep, window: TimeRangeDep, machine_id: MachineFilter = None,
                     level: LevelFilter = None) -> dict[str, Any]:
    """Close encounters by time of closest approach: machine_a, machine_b, at, min_distance_m, min_ttc_s (null:
    never on a collision course), level, and started_at, ended_at, max_closing_kmh, lat, lon, zone."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        return ctx.named(ctx.rows(_EVENTS, {
            "site": ctx.site_id, "start": window.start, "end": window.end, "machine": machine_id, "level": level,
            "after_at": after[0] if after else None, "after_a": after[1] if after else None,
            "after_b": after[2] if after else None, "limit": limit}), "zone")

    return page.fetch(read, at=datetime, machine_a=str, machine_b=str)


_QUEUES = """
    SELECT zone, machine_id, queued_from, queued_to, wait_s, zone_type, shift_date::text AS shift_date, shift
    FROM traffic_awareness.queues
    WHERE site_id = %(site)s
      AND (%(start)s::timestamptz IS NULL OR queued_from >= %(start)s)
      AND (%(end)s::timestamptz IS NULL OR queued_from < %(end)s)
      AND (%(machine)s::text IS NULL OR machine_id = %(machine)s) AND (%(zone)s::text IS NULL OR zone = %(zone)s)
      AND (%(after_at)s::timestamptz IS NULL OR (queued_from, machine_id) > (%(after_at)s, %(after_m)s))
    ORDER BY queued_from, machine_id LIMIT %(limit)s"""


@router.get("/queues")
def queues(ctx: ServiceRequestDep, page: PageDep, window: TimeRangeDep, machine_id: MachineFilter = None,
           zone: ZoneFilter = None) -> dict[str, Any]:
    """Queues at load and dump zones: zone, machine_id, queued_from, queued_to, wait_s, zone_type, shift."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        return ctx.named(ctx.rows(_QUEUES, {
            "site": ctx.site_id, "start": window.start, "end": window.end, "machine": machine_id, "zone": zone,
            "after_at": after[0] if after else None, "after_m": after[1] if after else None, "limit": limit}), "zone")

    return page.fetch(read, queued_from=datetime, machine_id=str)


@router.get("/queues/summary")
def queue_summary(ctx: ServiceRequestDep, window: TimeRangeDep) -> dict[str, Any]:
    """Per zone and shift: loads or dumps served, queues, mean and p90 wait (s), queue minutes, and for load zones
    the loading units' idle time waiting for haulers (under-trucking) against hauler queue time (over-trucking)."""
    params = {"site": ctx.site_id, "start": window.start, "end": window.end}
    waits = ctx.frame("""
        SELECT zone, zone_type, shift_date::text AS shift_date, shift, wait_s FROM traffic_awareness.queues
        WHERE site_id = %(site)s AND (%(start)s::timestamptz IS NULL OR queued_from >= %(start)s)
          AND (%(end)s::timestamptz IS NULL OR queued_from < %(end)s)""", params)
    served = ctx.frame("""
        SELECT zone, zone_type, shift_date::text AS shift_date, shift, served_from, served_to
        FROM traffic_awareness.services
        WHERE site_id = %(site)s AND (%(start)s::timestamptz IS NULL OR served_from >= %(start)s)
          AND (%(end)s::timestamptz IS NULL OR served_from < %(end)s)""", params)
    units = loading_units(ctx)
    items = []
    keys = ["zone", "zone_type", "shift_date", "shift"]
    groups = sorted({*map(tuple, served[keys].to_numpy().tolist()), *map(tuple, waits[keys].to_numpy().tolist())})
    for key in groups:
        w = waits.loc[(waits[keys] == list(key)).all(axis=1), "wait_s"].astype(float)
        s = served.loc[(served[keys] == list(key)).all(axis=1)]
        item = dict(zip(keys, key, strict=True))
        item.update(served=len(s), queues=len(w), mean_wait_s=round(float(w.mean()), 1) if len(w) else None,
                    p90_wait_s=round(float(np.percentile(w, 90)), 1) if len(w) else None,
                    queue_minutes=round(float(w.sum()) / 60, 1))
        if key[1] == "load" and len(s):
            idle = idle_minutes(s, units.get(key[0], 1))
            item.update(loading_units=units.get(key[0], 1), loader_idle_minutes=round(idle, 1),
                        trucking="over" if item["queue_minutes"] > idle else "under")
        items.append(item)
    return {"items": ctx.named(items, "zone")}


@router.get("/queues/length")
def queue_length(ctx: ServiceRequestDep, window: TimeRangeDep, zone: ZoneFilter = None,
                 bucket_s: Annotated[int, Query(ge=10, le=86400, description="bucket length in seconds")] = 60,
                 ) -> dict[str, Any]:
    """Queue length over time per zone: mean number of haulers queueing in each time bucket."""
    rows = ctx.frame("""
        SELECT zone, queued_from, queued_to FROM traffic_awareness.queues
        WHERE site_id = %(site)s AND (%(zone)s::text IS NULL OR zone = %(zone)s)
          AND (%(end)s::timestamptz IS NULL OR queued_from < %(end)s)
          AND (%(start)s::timestamptz IS NULL OR queued_to > %(start)s)""",
                     {"site": ctx.site_id, "zone": zone, "start": window.start, "end": window.end})
    series = []
    for zone_id, part in rows.groupby("zone", sort=True):
        start = window.start or part["queued_from"].min()
        end = window.end or part["queued_to"].max()
        edges = pd.date_range(pd.Timestamp(start).floor(f"{bucket_s}s"), pd.Timestamp(end), freq=f"{bucket_s}s")
        lo, hi = edges.asi8[:, None], edges.asi8[:, None] + bucket_s * 10**9
        qf = pd.to_datetime(part["queued_from"], utc=True).astype("int64").to_numpy()[None, :]
        qt = pd.to_datetime(part["queued_to"], utc=True).astype("int64").to_numpy()[None, :]
        overlap = np.clip(np.minimum(hi, qt) - np.maximum(lo, qf), 0, None).sum(axis=1) / (bucket_s * 10**9)
        series.append({"zone": zone_id, "points": [{"at": e.isoformat(), "length": round(float(v), 2)}
                                                   for e, v in zip(edges, overlap, strict=True)]})
    return {"bucket_s": bucket_s, "series": ctx.named(series, "zone")}


@router.get("/congestion")
def congestion(ctx: TrafficRequestDep, window: TimeRangeDep, segment: Annotated[str | None, Query(max_length=128)]
               = None) -> dict[str, Any]:
    """Per road segment and minute: machines (density per km), mean speed and free-flow speed; and congested
    periods: mean speed below ``congestion_share`` of free-flow for more than ``congestion_min_s``."""
    settings = ctx.settings
    end = window.end or datetime.now(UTC)
    start = window.start or end - timedelta(hours=2)
    frame = ctx.frame("""
        SELECT segment, minute, count(DISTINCT machine_id) AS machines, sum(samples) AS samples,
               sum(speed_sum_kmh) AS speed_sum, sum(dwell_ms) AS dwell_ms
        FROM traffic_awareness.segment_use
        WHERE site_id = %(site)s AND minute >= %(start)s AND minute < %(end)s
          AND (%(segment)s::text IS NULL OR segment = %(segment)s)
        GROUP BY segment, minute ORDER BY segment, minute""",
                      {"site": ctx.site_id, "start": start, "end": end, "segment": segment})
    site = load_site(ctx.conn, ctx.site_id)
    info = _segment_info(site, settings)
    out = []
    for seg, part in frame.groupby("segment", sort=True):
        mean = part["speed_sum"].astype(float) / part["samples"].astype(float)
        meta = info.get(seg, {"kind": "road", "length_m": None, "limit_kmh": None})
        moving = mean[mean >= settings.moving_min_kmh]
        observed = float(np.percentile(moving, settings.free_flow_percentile)) if len(moving) else None
        limit = meta["limit_kmh"]
        free_flow = min(v for v in (observed, limit) if v is not None) if (observed or limit) else None
        slow = (mean < settings.congestion_share * free_flow).to_numpy() if free_flow else np.zeros(len(part), bool)
        minutes = pd.to_datetime(part["minute"], utc=True).astype("int64").to_numpy() // 10**6
        runs = congested_runs(minutes, slow, int(settings.congestion_min_s // 60))
        length_km = (meta["length_m"] or 0) / 1000
        occupancy = part["dwell_ms"].astype(float) / 60_000  # mean machines on the segment during the minute
        out.append({
            "segment": seg, **meta, "free_flow_kmh": round(free_flow, 1) if free_flow else None,
            "minutes": [{"minute": m.isoformat(), "machines": int(n), "density_per_km":
                         round(float(o) / length_km, 2) if length_km else None, "mean_speed_kmh": round(float(v), 1),
                         "congested": bool(c)}
                        for m, n, o, v, c in zip(part["minute"], part["machines"], occupancy, mean, slow, strict=True)],
            "congested": [{"from": pd.Timestamp(a, unit="ms", tz="UTC").isoformat(),
                           "to": pd.Timestamp(b, unit="ms", tz="UTC").isoformat()} for a, b in runs]})
    return {"from": start.isoformat(), "to": end.isoformat(), "segments": out}


def _segment_info(site: Any, settings: TrafficSettings) -> dict[str, dict[str, Any]]:
    if site is None:
        return {}
    segments = Layout(site, settings).segments
    return {sid: {"kind": kind, "length_m": round(float(length), 1),
                  "limit_kmh": float(limit) if np.isfinite(limit) else None}
            for sid, kind, length, limit in zip(segments.ids, segments.kinds, segments.lengths, segments.limits,
                                                strict=True)}


def loading_units(ctx: ServiceRequest) -> dict[str, int]:
    """Loading units (loaders, excavators) per load zone, from where positioning last saw them."""
    units = [m.id for m in ctx.machines().values() if m.kind in ("loader", "excavator")]
    frame = ctx.frame("""
        SELECT zone, count(DISTINCT machine_id) AS units FROM positioning.track_last
        WHERE site_id = %(site)s AND zone IS NOT NULL AND machine_id = ANY(%(units)s) GROUP BY zone""",
                      {"site": ctx.site_id, "units": units})
    return {row["zone"]: int(row["units"]) for row in frame.to_dict("records")}


def idle_minutes(served: pd.DataFrame, units: int) -> float:
    """Loading-unit minutes without a hauler to load, between the first and the last service of the period."""
    if served.empty:
        return 0.0
    start = pd.to_datetime(served["served_from"], utc=True).astype("int64").to_numpy() // 10**6
    end = pd.to_datetime(served["served_to"], utc=True).astype("int64").to_numpy() // 10**6
    events = np.r_[start, end]
    change = np.r_[np.ones(len(start)), -np.ones(len(end))]
    order = np.lexsort((change, events))
    events, busy = events[order], np.cumsum(change[order])
    span = np.diff(events)
    idle = (np.maximum(units - busy[:-1], 0) * span).sum()
    return float(idle) / 60_000


@router.get("/recommendations")
def recommendations(ctx: ServiceRequestDep, window: TimeRangeDep,
                    min_queue_minutes_per_hour: Annotated[float, Query(ge=0, le=600)] = 5.0) -> dict[str, Any]:
    """When haulers queue at one loader while another waits for haulers: move N haulers, with the expected hauler
    waiting saved per hour under a finite-source queue model (M/M/c//N, the machine-repair model), inputs stated."""
    end = window.end or datetime.now(UTC)
    start = window.start or end - timedelta(hours=2)
    served = ctx.frame("""
        SELECT machine_id, zone, served_from, served_to, arrived_at FROM traffic_awareness.services
        WHERE site_id = %(site)s AND zone_type = 'load' AND served_from >= %(start)s AND served_from < %(end)s
        ORDER BY machine_id, served_from""", {"site": ctx.site_id, "start": start, "end": end})
    waits = ctx.frame("""
        SELECT zone, sum(wait_s) AS wait_s FROM traffic_awareness.queues
        WHERE site_id = %(site)s AND zone_type = 'load' AND queued_from >= %(start)s AND queued_from < %(end)s
        GROUP BY zone""", {"site": ctx.site_id, "start": start, "end": end})
    return advise(served, waits, loading_units(ctx), (end - start).total_seconds() / 3600,
                  min_queue_minutes_per_hour)


def advise(served: pd.DataFrame, waits: pd.DataFrame, units: Mapping[str, int], hours: float,
           min_queue_minutes_per_hour: float) -> dict[str, Any]:
    """The recommendation from service records: per load zone the model inputs, then the best single move."""
    model = ("finite-source queue M/M/c//N per load zone (machine-repair model): N haulers assigned to the zone, "
             "c loading units, mean service time S (hauler standing at the loader) and mean rest-of-cycle time T "
             "(cycle time minus service and queue) measured over the period; a moved hauler takes the rest-of-cycle "
             "time of its new zone")
    zones: dict[str, dict[str, Any]] = {}
    if served.empty or hours <= 0:
        return {"model": model, "zones": [], "recommendations": []}
    served = served.assign(served_from=pd.to_datetime(served["served_from"], utc=True),
                           served_to=pd.to_datetime(served["served_to"], utc=True),
                           arrived_at=pd.to_datetime(served["arrived_at"], utc=True))
    wait_by_zone = dict(zip(waits["zone"], waits["wait_s"].astype(float), strict=False)) if not waits.empty else {}
    home = served.groupby("machine_id")["zone"].agg(lambda z: z.value_counts().index[0])
    for zone, part in served.groupby("zone", sort=True):
        haulers = int((home == zone).sum())
        service_s = float((part["served_to"] - part["served_from"]).dt.total_seconds().mean())
        cycles = part.sort_values(["machine_id", "served_from"]).groupby("machine_id")["served_from"].diff()
        cycle_s = float(cycles.dt.total_seconds().median()) if cycles.notna().any() else np.nan
        queue_s = wait_by_zone.get(zone, 0.0) / max(len(part), 1)
        travel_s = cycle_s - service_s - queue_s if np.isfinite(cycle_s) else np.nan
        zones[zone] = {"zone": zone, "haulers": haulers, "loading_units": int(units.get(zone, 1)),
                       "loads": len(part), "service_s": round(service_s, 1),
                       "cycle_s": round(cycle_s, 1) if np.isfinite(cycle_s) else None,
                       "rest_of_cycle_s": round(travel_s, 1) if np.isfinite(travel_s) else None,
                       "queue_minutes_per_hour": round(wait_by_zone.get(zone, 0.0) / 60 / hours, 1)}
    usable = {z: v for z, v in zones.items() if v["rest_of_cycle_s"] and v["rest_of_cycle_s"] > 0}

    def waiting(zone: str, n: int) -> QueueModel:
        v = usable[zone]
        return finite_source_queue(n, v["loading_units"], v["service_s"], v["rest_of_cycle_s"])

    for zone, v in usable.items():
        m = waiting(zone, v["haulers"])
        v.update(model_waiting_haulers=round(m.waiting_haulers, 2), model_loads_per_hour=round(m.loads_per_hour, 1),
                 model_loader_idle_share=round(m.server_idle_share, 3))
    best = None
    for source, s in usable.items():
        if s["queue_minutes_per_hour"] < min_queue_minutes_per_hour:
            continue
        for target, t in usable.items():
            if target == source:
                continue
            before_s, before_t = waiting(source, s["haulers"]), waiting(target, t["haulers"])
            for n in range(1, s["haulers"]):
                after_s, after_t = waiting(source, s["haulers"] - n), waiting(target, t["haulers"] + n)
                saved = 60 * (before_s.waiting_haulers + before_t.waiting_haulers - after_s.waiting_haulers
                              - after_t.waiting_haulers)
                loads = after_s.loads_per_hour + after_t.loads_per_hour - before_s.loads_per_hour \
                    - before_t.loads_per_hour
                if loads < -0.5 or saved <= 0:
                    continue
                if best is None or saved > best["waiting_saved_min_per_hour"]:
                    best = {"move_haulers": n, "from_zone": source, "to_zone": target,
                            "waiting_saved_min_per_hour": round(saved, 1), "loads_per_hour_change": round(loads, 1),
                            "message": f"Move {n} hauler{'s' if n > 1 else ''} from {source} to {target}: expected "
                                       f"hauler waiting saved {saved:.0f} min per hour, loads per hour "
                                       f"{loads:+.1f} ({model})"}
    return {"model": model, "zones": list(zones.values()), "recommendations": [best] if best else []}


# The card reads bounded data only, so it stays flat as history grows: today's encounters (index range on
# encounters_site_time), the ten newest (backward index scan), at most 50 alerts (unique-index prefix, stops at 50)
# and each hauler's newest track point from positioning's last-value table (positioning.track_last); the haulers,
# the site's load and dump zones and the alert count come with the CardContext.
_CARD_COUNTS = """
    SELECT count(*) AS encounters, count(*) FILTER (WHERE level = 'critical') AS critical
    FROM traffic_awareness.encounters WHERE site_id = %(site)s AND at >= %(today)s"""
_CARD_LATEST = """
    SELECT machine_a, machine_b, at, min_distance_m, min_ttc_s, level, lat, lon
    FROM traffic_awareness.encounters WHERE site_id = %(site)s ORDER BY at DESC LIMIT 10"""
_QUEUE_NOW = """
    SELECT count(*) AS n FROM positioning.track_last
    WHERE site_id = %(site)s AND ts > now() - interval '10 minutes' AND state = 'idle'
      AND machine_id = ANY(%(haulers)s) AND zone = ANY(%(zones)s)"""


def card_data(ctx: CardContext) -> Card:
    """Encounters today and how many were critical, and the number of haulers queueing now."""
    today = ctx.now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = ctx.read(_CARD_COUNTS, {"site": ctx.site_id, "today": today})
    latest = ctx.read(_CARD_LATEST, {"site": ctx.site_id})
    queue_now = _queue_now(ctx)
    encounters = int(counts["encounters"].iloc[0]) if not counts.empty else 0
    critical = int(counts["critical"].iloc[0]) if not counts.empty else 0
    return Card(title="Traffic", metrics=[
        {"label": "encounters today", "value": encounters, "unit": ""},
        {"label": "critical", "value": critical, "unit": ""},
        {"label": "standing at load/dump zones now", "value": queue_now, "unit": "haulers"}],
        data={"latest_encounters": latest.to_dict("records"),
              "recent_alerts": ctx.alert_count(50)},
        link="proximity-events")


def _queue_now(ctx: CardContext) -> int:
    """Haulers standing in a load or dump zone of the site file right now (waiting or being served), from
    positioning's track: queue rows are written when a hauler leaves, so the live figure counts standing haulers."""
    haulers = [m.id for m in ctx.machines.values() if m.kind == "hauler"]
    zones = [z.id for z in ctx.site.zones_of("load", "dump")]
    if not haulers or not zones:
        return 0
    frame = ctx.read(_QUEUE_NOW, {"site": ctx.site_id, "haulers": haulers, "zones": zones})
    return int(frame["n"].iloc[0]) if not frame.empty else 0
