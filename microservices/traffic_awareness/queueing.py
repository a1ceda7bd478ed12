"""Queues at load and dump zones: each hauler's stays, the stop at which it is served and the wait before it;
and the finite-source queue model behind the re-allocation advice.

docs/DOMAIN.md §Queueing: a hauler waiting at a load or dump zone while another is served is queueing;
loader idle time waiting for haulers means under-trucking, long hauler queues over-trucking. A stay is
decided from one hauler's samples alone, so it is final when the hauler has left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely

from microservices.sdk import Outputs
from microservices.series import stamps
from microservices.shifts import shift_columns
from microservices.traffic_awareness.roads import NONE, Layout
from microservices.traffic_awareness.settings import TrafficSettings
from microservices.traffic_awareness.track import Positions, Setup
from sitepulse.sitefile import SiteConfig


@dataclass(frozen=True)
class ZoneVisit:
    """One hauler's stay at (or approach to) a load or dump zone, and where it waited and was served."""

    zone: int
    arrived: int
    left: int
    served_from: int | None
    served_to: int | None
    queued_from: int | None
    queued_to: int | None


def zone_stays(t: np.ndarray, near: np.ndarray, inside: np.ndarray, stopped: np.ndarray,
               carried: dict[str, Any] | None, service_min_ms: int = 0, payload: np.ndarray | None = None,
               pass_kg: float | None = None, loading_zones: frozenset[int] = frozenset()
               ) -> tuple[list[ZoneVisit], dict[str, Any] | None]:
    """One hauler's stays at load/dump zones from its samples: the service stop and the queue before it.

    A stay is a run of samples near one zone (``near`` = its code, NONE elsewhere). Within it, runs of
    ``stopped`` samples are stops. At a load zone (``loading_zones``) the stop at which the hauler is served is the
    one in which its payload first rises by a pass while it stands (``pass_kg`` over its lowest standing reading
    of the stay: loading is the span in which the payload rises); at a dump zone, or without a payload reading,
    the last stop with a sample inside the zone polygon lasting at least ``service_min_ms`` (loaded or tipping:
    a pause on the way out, behind a truck or at the exit, is shorter). The stops before it are waiting: the
    queue runs from the start of the first stop to the end of the stop just before the service stop (the hauler
    then drives to its spot). A loaded pause after the last pass (real trucks stand 49-60 s) is neither queue nor
    the start of loading. This matches docs/DOMAIN.md's "a hauler waiting at a load or dump zone while another is
    served" without needing to see the other machine. A stay is reported when the hauler has left the zone's
    surroundings. ``carried`` is the open stay after earlier samples (None: not near
    any zone).
    """
    visits: list[ZoneVisit] = []
    c = dict(carried) if carried else None
    n = len(t)
    if n == 0:
        return visits, c
    weighed = payload is not None and pass_kg is not None and pass_kg > 0
    key = near.astype(np.int64) * 2 + stopped.astype(np.int64)
    change = np.flatnonzero(np.diff(key)) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, n]
    for begin, end in zip(starts, ends, strict=True):
        zone, is_stop = int(near[begin]), bool(stopped[begin])
        first_t = int(t[begin])
        if c is not None and c["zone"] != zone:  # left the stay's surroundings at this run's first sample
            _close_stop(c, first_t)
            visits.append(_visit(c, first_t))
            c = None
        if zone == NONE:
            continue
        if c is None:
            c = {"zone": zone, "arrived": first_t, "first_stop": None, "stop": None, "prev_end": None,
                 "service": None, "service_min": service_min_ms, "lowest": None, "loaded": None}
        if weighed and is_stop and zone in loading_zones:  # standing: a moving body bounces by 5-15 %
            _weigh(c, t[begin:end], payload[begin:end], pass_kg)
        if is_stop:
            if c["stop"] is None:
                c["stop"] = {"start": first_t, "inside": False, "loaded": False}
                if c["first_stop"] is None:
                    c["first_stop"] = first_t
            c["stop"]["inside"] = bool(c["stop"]["inside"] or inside[begin:end].any())
            c["stop"]["loaded"] = bool(c["stop"]["loaded"] or c.get("loaded") is not None)
        else:
            _close_stop(c, first_t)
    return visits, c


def _weigh(c: dict[str, Any], t: np.ndarray, payload: np.ndarray, pass_kg: float) -> None:
    """Follow the stay's payload: its lowest reading and, once a reading exceeds that by a pass, when loading
    began (negative values and sentinels such as -99 are no reading)."""
    if c.get("loaded") is not None:
        return
    valid = np.isfinite(payload) & (payload >= 0)
    if not valid.any():
        return
    p, at = payload[valid], t[valid]
    lowest = np.minimum.accumulate(np.r_[c["lowest"] if c.get("lowest") is not None else np.inf, p])
    risen = np.flatnonzero(p > lowest[:-1] + pass_kg)
    if len(risen):
        c["loaded"] = int(at[risen[0]])
    c["lowest"] = float(lowest[-1])


def _close_stop(c: dict[str, Any], end_t: int) -> None:
    """End the current stop at ``end_t`` (the first sample after it): the one the payload rose in is the service;
    without a rise, a stop inside the zone may be."""
    stop = c.get("stop")
    if stop is None:
        return
    if not (c["service"] or {}).get("weighed"):
        if stop.get("loaded"):
            c["service"] = {"start": stop["start"], "end": end_t, "queue_end": c["prev_end"], "weighed": True}
        elif stop["inside"] and end_t - stop["start"] >= c.get("service_min", 0):
            c["service"] = {"start": stop["start"], "end": end_t, "queue_end": c["prev_end"]}
    c["prev_end"] = end_t
    c["stop"] = None


def _visit(c: dict[str, Any], left: int) -> ZoneVisit:
    service = c["service"]
    queued_from = queued_to = None
    if service is not None and service["queue_end"] is not None and c["first_stop"] is not None \
            and c["first_stop"] < service["start"]:
        queued_from, queued_to = c["first_stop"], service["queue_end"]
    return ZoneVisit(zone=c["zone"], arrived=c["arrived"], left=left,
                     served_from=service["start"] if service else None,
                     served_to=service["end"] if service else None, queued_from=queued_from, queued_to=queued_to)


def stays(out: Outputs, positions: Positions, payload: np.ndarray, setup: Setup, carried: dict[str, Any]
          ) -> dict[str, Any]:
    """Queues and service stops of haulers at load and dump zones (per machine, final on arrival); ``payload`` per
    sample (kg, NaN: none) tells loading from standing where the hauler reports one."""
    model, settings = setup.layout, setup.settings
    if model is None or not model.served:
        return carried
    stays = dict(carried or {})
    found = []
    fx, fy, speed, t = positions.x, positions.y, positions.speed, positions.t
    for code, machine in enumerate(positions.ids):
        if setup.kinds.get(machine) != "hauler":
            continue
        own = np.flatnonzero((positions.group == code) & positions.new)
        if len(own) == 0:
            continue
        x, y = fx[own], fy[own]
        known = np.isfinite(x) & np.isfinite(y)
        points = shapely.points(np.where(known, x, 0), np.where(known, y, 0))
        distance = np.column_stack([shapely.distance(model.index.polygons[z], points) for z in model.served])
        distance[~known] = np.inf
        nearest = distance.argmin(axis=1)
        near = np.where(distance[np.arange(len(own)), nearest] <= settings.queue_approach_m,
                        np.array(model.served)[nearest], NONE)
        inside = distance[np.arange(len(own)), nearest] <= 0
        stopped = np.nan_to_num(speed[own], nan=0.0) < settings.queue_stop_kmh
        rated = setup.rated.get(machine)
        pass_kg = settings.loading_pass_share * rated if rated and np.isfinite(rated) and rated > 0 else None
        visits, open_stay = zone_stays(t[own], near, inside, stopped, stays.get(machine),
                                       int(settings.service_min_s * 1000), payload[own], pass_kg,
                                       frozenset(model.load))
        stays[machine] = open_stay
        found += [(machine, v) for v in visits if v.served_from is not None]
    if found:
        write_stays(out, found, model, setup.site, settings)
    return {m: c for m, c in stays.items() if c is not None}


def write_stays(out: Outputs, found: list[tuple[str, ZoneVisit]], model: Layout, site: SiteConfig | None,
                settings: TrafficSettings) -> None:
    """Service stops (every stay that had one) and the queues before them, with the shift they fall in."""
    zones = model.index.zones
    served_from = np.array([v.served_from for _, v in found], dtype=np.int64)
    shift_date, shift = shift_columns(served_from, site)
    out.write("services", pd.DataFrame({
        "machine_id": [m for m, _ in found], "zone": [zones[v.zone].id for _, v in found],
        "zone_type": [zones[v.zone].type.value for _, v in found],
        "arrived_at": stamps(np.array([v.arrived for _, v in found], dtype=np.int64)),
        "served_from": stamps(served_from),
        "served_to": stamps(np.array([v.served_to for _, v in found], dtype=np.int64)),
        "left_at": stamps(np.array([v.left for _, v in found], dtype=np.int64)),
        "service_s": [(v.served_to - v.served_from) / 1000 for _, v in found],
        "shift_date": shift_date, "shift": shift}))
    queued = [(m, v) for m, v in found if v.queued_from is not None
              and v.queued_to - v.queued_from >= settings.queue_min_s * 1000]
    if not queued:
        return
    start = np.array([v.queued_from for _, v in queued], dtype=np.int64)
    end = np.array([v.queued_to for _, v in queued], dtype=np.int64)
    shift_date, shift = shift_columns(start, site)
    out.write("queues", pd.DataFrame({
        "machine_id": [m for m, _ in queued], "zone": [zones[v.zone].id for _, v in queued],
        "zone_type": [zones[v.zone].type.value for _, v in queued],
        "queued_from": stamps(start), "queued_to": stamps(end), "wait_s": (end - start) / 1000,
        "shift_date": shift_date, "shift": shift}))


@dataclass(frozen=True)
class QueueModel:
    """Expected behaviour of one loading point under a finite-source queue (the machine-repair model)."""

    haulers: int
    servers: int
    service_s: float
    travel_s: float
    waiting_haulers: float  # mean number of haulers queueing
    loads_per_hour: float
    wait_s: float  # mean wait per load
    server_idle_share: float  # share of loading-unit time without a hauler


def finite_source_queue(haulers: int, servers: int, service_s: float, travel_s: float) -> QueueModel:
    """M/M/c//N: ``haulers`` cycle between ``servers`` loading units (exponential service of mean ``service_s``)
    and the rest of their cycle (mean ``travel_s``); the standard model for trucks and shovels (machine-repair).
    """
    n, c = int(haulers), max(1, int(servers))
    if n <= 0 or service_s <= 0:
        return QueueModel(n, c, service_s, travel_s, 0.0, 0.0, 0.0, 1.0)
    r = service_s / max(travel_s, 1e-9)
    weights = np.zeros(n + 1)
    for k in range(n + 1):
        if k <= c:
            weights[k] = math.comb(n, k) * r**k
        else:
            weights[k] = math.comb(n, k) * math.factorial(k) / (math.factorial(c) * c ** (k - c)) * r**k
    p = weights / weights.sum()
    k = np.arange(n + 1)
    waiting = float(((k - c).clip(min=0) * p).sum())
    busy = float((np.minimum(k, c) * p).sum())
    rate = busy / service_s  # loads per second
    return QueueModel(n, c, service_s, travel_s, waiting, rate * 3600, waiting / rate if rate > 0 else 0.0,
                      1 - busy / c)
