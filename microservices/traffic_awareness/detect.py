"""Pure, vectorised traffic logic: synchronise machines, find close encounters, queues, road use and queueing.

Every function works on whole arrays (samples sorted by machine then time, times in integer
milliseconds) so results are exact and do not depend on how samples were split into batches.
Python loops run over machines, stop runs or episodes, never over samples.

Facts used (DOMAIN.md, "Traffic awareness and collision warning" and "Haul cycle"): warning when
two moving machines come within 20 m with time to collision under 8 s, critical within 10 m or
under 4 s (SitePulse defaults, ISO 21815 / EMESRT L7-L8 awareness and advisory level); pairs meant
to be close are excluded (a loader with the hauler it is loading, machines parked in one parking
zone); a hauler waiting at a load or dump zone while another is served is queueing; loader idle time
waiting for haulers means under-trucking, long hauler queues over-trucking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
import shapely.ops

from microservices.series import KEY_SPAN, window_median

NONE = -1
WARNING, CRITICAL = 1, 2
LEVEL_NAMES = {WARNING: "warning", CRITICAL: "critical"}


# --- synchronised positions ------------------------------------------------------------------------------


def velocity(speed_kmh: np.ndarray, heading_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """East and north velocity (m/s) from reported speed and compass heading; a standing machine has none."""
    speed = np.nan_to_num(np.asarray(speed_kmh, dtype=float), nan=0.0) / 3.6
    heading = np.radians(np.asarray(heading_deg, dtype=float))
    vx = np.where(speed > 0, speed * np.sin(heading), 0.0)
    vy = np.where(speed > 0, speed * np.cos(heading), 0.0)
    return np.nan_to_num(vx), np.nan_to_num(vy)


def segments_by_gap(group: np.ndarray, t: np.ndarray, max_gap_ms: int) -> np.ndarray:
    """A run id per sample: a new run starts with each machine and after every gap longer than ``max_gap_ms``."""
    start = np.r_[True, (group[1:] != group[:-1]) | (np.diff(t) > max_gap_ms)] if len(t) else np.zeros(0, bool)
    return np.cumsum(start) - 1


def dead_reckoning_mm(run: np.ndarray, t: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """Distance travelled east and north since the run's first sample, in whole millimetres (trapezoid of
    the reported velocities). Integers, so a difference between two samples is exact whatever the origin."""
    same = np.r_[False, run[1:] == run[:-1]] if len(t) else np.zeros(0, bool)
    dt = np.r_[0, np.diff(t)].astype(float) / 1000.0
    step_x = np.where(same, np.rint((np.r_[0.0, vx[:-1]] + vx) / 2 * dt * 1000), 0).astype(np.int64)
    step_y = np.where(same, np.rint((np.r_[0.0, vy[:-1]] + vy) / 2 * dt * 1000), 0).astype(np.int64)
    cx, cy = np.cumsum(step_x), np.cumsum(step_y)
    first = np.flatnonzero(~same)
    base = np.repeat(first, np.diff(np.r_[first, len(t)]))
    return cx - cx[base], cy - cy[base]


def filter_fixes(run: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, dr_x: np.ndarray,
                 dr_y: np.ndarray, window_ms: int, gate_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Each fix as measured, unless it is a GNSS jump: then the causal, motion-compensated median of the
    fixes in the last ``window_ms`` of its run.

    Each earlier fix is moved to the sample's time by the dead-reckoned distance between them and the
    median is taken: a jump (tens of metres for a few seconds, DOMAIN.md) is outvoted as long as it lasts
    less than half the window, and no future sample is needed, so alerts are not delayed. A fix within
    ``gate_m`` of that median is kept as it is: dead reckoning drifts through turns and with a speedometer
    a few per cent off, and the median would carry that drift into every position.
    """
    n = len(t)
    if n == 0 or window_ms <= 0:
        return x.astype(float).copy(), y.astype(float).copy()
    key = run.astype(np.int64) * KEY_SPAN + t.astype(np.int64)
    lo = np.searchsorted(key, key - window_ms, side="left")
    hi = np.arange(1, n + 1)
    finite = np.isfinite(x) & np.isfinite(y)

    def moved(coord: np.ndarray, dr: np.ndarray) -> Any:
        return lambda i, j: np.where(finite[j], coord[j] + (dr[i] - dr[j]) / 1000.0, np.nan)

    mx, my = window_median(lo, hi, moved(x, dr_x), n), window_median(lo, hi, moved(y, dr_y), n)
    keep = finite & (np.hypot(x - mx, y - my) <= gate_m)
    return np.where(keep, x, mx), np.where(keep, y, my)


def interpolate(group: np.ndarray, t: np.ndarray, values: list[np.ndarray], machines: int, grid: np.ndarray,
                max_gap_ms: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Values of every machine at every grid instant (linear between the samples around it).

    Returns ``present`` (instants x machines), one (instants x machines) array per value, and the time of the
    sample at or after each instant (the one that let it be decided); a machine is present at an instant when
    it has a sample at it, or samples on both sides at most ``max_gap_ms`` apart.
    """
    shape = (len(grid), machines)
    present = np.zeros(shape, dtype=bool)
    out = [np.full(shape, np.nan) for _ in values]
    next_t = np.zeros(shape, dtype=np.int64)
    if len(t) == 0 or len(grid) == 0:
        return present, out, next_t
    key = group.astype(np.int64) * KEY_SPAN + t.astype(np.int64)
    want = (np.arange(machines, dtype=np.int64)[None, :] * KEY_SPAN + grid.astype(np.int64)[:, None]).ravel()
    after = np.searchsorted(key, want, side="left")
    before = after - 1
    owner = np.repeat(np.arange(machines)[None, :], len(grid), axis=0).ravel()
    at_or_after = np.clip(after, 0, len(t) - 1)
    at_before = np.clip(before, 0, len(t) - 1)
    has_after = (after < len(t)) & (group[at_or_after] == owner)
    has_before = (before >= 0) & (group[at_before] == owner)
    exact = has_after & (key[at_or_after] == want)
    span = t[at_or_after] - t[at_before]
    between = has_after & has_before & ~exact & (span <= max_gap_ms) & (span > 0)
    ok = exact | between
    w = np.where(between, (want - key[at_before]) / np.where(span > 0, span, 1), 0.0)
    present.ravel()[:] = ok
    for target, value in zip(out, values, strict=True):
        mixed = value[at_before] * (1 - w) + value[at_or_after] * w
        target.ravel()[:] = np.where(exact, value[at_or_after], np.where(between, mixed, np.nan))
    next_t.ravel()[:] = t[at_or_after]
    if len(out) >= 2:
        present &= np.isfinite(out[0]) & np.isfinite(out[1])
    return present, out, next_t


def snap_to_lanes(x: np.ndarray, y: np.ndarray, heading_deg: np.ndarray, eligible: np.ndarray, lines: list[Any],
                  corridor_m: float, lane_offset_m: float, tolerance_m: float,
                  max_angle_deg: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Map-match positions onto their lane: on exactly one road that runs along the heading (within the corridor
    of its centreline, within ``max_angle_deg`` of it either way), and within ``tolerance_m`` of the lane
    ``lane_offset_m`` right of the centreline for the direction of travel, the lateral offset becomes the
    lane's. The position along the road is kept as measured; off-lane positions are left alone."""
    x, y = x.copy(), y.copy()
    rows = np.flatnonzero(eligible & np.isfinite(x) & np.isfinite(y) & np.isfinite(heading_deg))
    if not lines or len(rows) == 0:
        return x, y
    points = shapely.points(x[rows], y[rows])
    hx, hy = np.sin(np.radians(heading_deg[rows])), np.cos(np.radians(heading_deg[rows]))
    count = np.zeros(len(rows), dtype=np.int64)
    shift_x = np.zeros(len(rows))
    shift_y = np.zeros(len(rows))
    snappable = np.zeros(len(rows), dtype=bool)
    cos_max = np.cos(np.radians(max_angle_deg))
    for line in lines:
        sel = np.flatnonzero(shapely.distance(line, points) <= corridor_m)
        if len(sel) == 0:
            continue
        along = shapely.line_locate_point(line, points[sel])
        foot = shapely.get_coordinates(shapely.line_interpolate_point(line, along))
        ahead = shapely.get_coordinates(shapely.line_interpolate_point(line, np.minimum(along + 1.0, line.length)))
        behind = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(along - 1.0, 0.0)))
        tangent = ahead - behind
        tangent /= np.maximum(np.hypot(tangent[:, 0], tangent[:, 1]), 1e-9)[:, None]
        cos = tangent[:, 0] * hx[sel] + tangent[:, 1] * hy[sel]
        aligned = np.abs(cos) >= cos_max
        sel, cos, foot, tangent = sel[aligned], cos[aligned], foot[aligned], tangent[aligned]
        count[sel] += 1
        direction = np.sign(cos)
        right = np.c_[tangent[:, 1], -tangent[:, 0]] * direction[:, None]  # unit normal to the right of travel
        offset = (x[rows[sel]] - foot[:, 0]) * right[:, 0] + (y[rows[sel]] - foot[:, 1]) * right[:, 1]
        shift = lane_offset_m - offset
        snappable[sel] = np.abs(shift) <= tolerance_m
        shift_x[sel] = shift * right[:, 0]
        shift_y[sel] = shift * right[:, 1]
    snap = (count == 1) & snappable
    x[rows[snap]] += shift_x[snap]
    y[rows[snap]] += shift_y[snap]
    return x, y


# --- close pairs and time to collision -------------------------------------------------------------------

HALF_NEIGHBOURS = ((0, 0), (1, 0), (0, 1), (1, 1), (1, -1))


def close_pairs(instant: np.ndarray, machine: np.ndarray, x: np.ndarray, y: np.ndarray,
                radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Row index pairs (i, j), machine[i] < machine[j], of positions at the same instant within ``radius_m``.

    Spatial pruning with a uniform grid of ``radius_m`` cells: a close pair lies in one cell or in two
    neighbouring ones, so only five cell offsets are joined (each unordered pair of cells once).
    """
    if len(x) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cells = pd.DataFrame({"k": instant, "cx": np.floor(x / radius_m).astype(np.int64),
                          "cy": np.floor(y / radius_m).astype(np.int64), "row": np.arange(len(x))})
    found_i, found_j = [], []
    for dx, dy in HALF_NEIGHBOURS:
        other = cells.assign(cx=cells["cx"] - dx, cy=cells["cy"] - dy)
        joined = cells.merge(other, on=["k", "cx", "cy"], suffixes=("_i", "_j"))
        i, j = joined["row_i"].to_numpy(), joined["row_j"].to_numpy()
        if dx == 0 and dy == 0:
            keep = machine[i] < machine[j]
            i, j = i[keep], j[keep]
        found_i.append(i)
        found_j.append(j)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    swap = machine[i] > machine[j]
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    near = np.hypot(x[j] - x[i], y[j] - y[i]) < radius_m
    return i[near], j[near]


def time_to_collision(px: np.ndarray, py: np.ndarray, vx: np.ndarray, vy: np.ndarray,
                      radius_m: float) -> np.ndarray:
    """Seconds until two machines at relative position p, relative velocity v, come within ``radius_m``.

    Constant-velocity closest approach: 0 when already within the radius, inf when they separate or the
    closest approach stays outside the radius (passing with a lateral offset is not a collision course).
    """
    a = vx * vx + vy * vy
    b = 2 * (px * vx + py * vy)
    c = px * px + py * py - radius_m * radius_m
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    ttc = np.where((a > 1e-9) & (disc >= 0) & (b < 0), tau, np.inf)
    return np.where(c <= 0, 0.0, ttc)


def encounter_level(distance_m: np.ndarray, ttc_s: np.ndarray, *, warning_distance_m: float, warning_ttc_s: float,
                    critical_distance_m: float, critical_ttc_s: float) -> np.ndarray:
    """0 (none), WARNING or CRITICAL per moment (DOMAIN.md defaults: warning within 20 m with TTC under 8 s;
    critical within 10 m or TTC under 4 s, both only for pairs within the warning distance)."""
    within = distance_m < warning_distance_m
    critical = within & ((distance_m < critical_distance_m) | (ttc_s < critical_ttc_s))
    warning = within & (ttc_s < warning_ttc_s)
    return np.where(critical, CRITICAL, np.where(warning, WARNING, 0)).astype(np.int8)


EPISODE_COLUMNS = ["a", "b", "start", "last", "at", "min_d", "min_ttc", "max_closing", "level", "alerted",
                   "at_x", "at_y"]


def merge_episodes(moments: pd.DataFrame, carried: pd.DataFrame, merge_ms: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Group flagged moments of each pair into encounter episodes, continuing the carried open ones.

    ``moments``: a, b, t, d, ttc, closing, level, x, y (one row per flagged pair and instant). ``carried``:
    open episodes (EPISODE_COLUMNS). Moments less than or equal to ``merge_ms`` after the previous one of
    the same pair join its episode. The minimum distance's time is the first instant that reaches it.
    Returns the episodes and, per moment, the index of its episode.
    """
    rows = pd.DataFrame({
        "a": moments["a"], "b": moments["b"], "start": moments["t"], "last": moments["t"], "at": moments["t"],
        "min_d": moments["d"], "min_ttc": moments["ttc"], "max_closing": moments["closing"],
        "level": moments["level"], "alerted": 0, "at_x": moments["x"], "at_y": moments["y"],
        "moment": np.arange(len(moments))})
    parts = [p for p in (carried[EPISODE_COLUMNS].assign(moment=-1) if not carried.empty else None, rows)
             if p is not None]
    frame = pd.concat(parts, ignore_index=True) if parts else rows
    if frame.empty:
        return frame.reindex(columns=EPISODE_COLUMNS), np.zeros(0, np.int64)
    frame = frame.sort_values(["a", "b", "start", "moment"], kind="stable").reset_index(drop=True)
    pair_change = (frame["a"] != frame["a"].shift()) | (frame["b"] != frame["b"].shift())
    previous_last = frame.groupby(["a", "b"], sort=False)["last"].shift()
    new = pair_change | (frame["start"] - previous_last > merge_ms)
    frame["episode"] = new.cumsum()
    closest = frame.sort_values(["episode", "min_d", "at"], kind="stable").groupby("episode").head(1)
    closest = closest.set_index("episode")
    grouped = frame.groupby("episode")
    out = pd.DataFrame({
        "a": grouped["a"].first(), "b": grouped["b"].first(), "start": grouped["start"].min(),
        "last": grouped["last"].max(), "at": closest["at"], "min_d": closest["min_d"],
        "min_ttc": grouped["min_ttc"].min(), "max_closing": grouped["max_closing"].max(),
        "level": grouped["level"].max(), "alerted": grouped["alerted"].max(), "at_x": closest["at_x"],
        "at_y": closest["at_y"]})
    of_moment = np.zeros(len(moments), np.int64)
    mine = frame["moment"].to_numpy() >= 0
    of_moment[frame["moment"].to_numpy()[mine]] = frame["episode"].to_numpy()[mine] - 1
    return out.reset_index(drop=True)[EPISODE_COLUMNS], of_moment


# --- queues at load and dump zones -----------------------------------------------------------------------


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
               carried: dict[str, Any] | None, service_min_ms: int = 0) -> tuple[list[ZoneVisit],
                                                                              dict[str, Any] | None]:
    """One hauler's stays at load/dump zones from its samples: the service stop and the queue before it.

    A stay is a run of samples near one zone (``near`` = its code, NONE elsewhere). Within it, runs of
    ``stopped`` samples are stops; the last stop with a sample inside the zone polygon lasting at least
    ``service_min_ms`` is the one at which the hauler is served (loaded or tipping: a pause on the way out,
    behind a truck or at the exit, is shorter); the stops before it are waiting: the queue runs from the start
    of the first stop to the end of the stop just before the service stop (the hauler then drives to its
    spot). This matches DOMAIN.md's "a hauler waiting at a load or dump zone while another is served" without
    needing to see the other machine. A stay is reported when the hauler has left the zone's surroundings.
    ``carried`` is the open stay after earlier samples (None: not near any zone).
    """
    visits: list[ZoneVisit] = []
    c = dict(carried) if carried else None
    n = len(t)
    if n == 0:
        return visits, c
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
                 "service": None, "service_min": service_min_ms}
        if is_stop:
            if c["stop"] is None:
                c["stop"] = {"start": first_t, "inside": False}
                if c["first_stop"] is None:
                    c["first_stop"] = first_t
            c["stop"]["inside"] = bool(c["stop"]["inside"] or inside[begin:end].any())
        else:
            _close_stop(c, first_t)
    return visits, c


def _close_stop(c: dict[str, Any], end_t: int) -> None:
    """End the current stop at ``end_t`` (the first sample after it); a stop inside the zone may be the service."""
    stop = c.get("stop")
    if stop is None:
        return
    if stop["inside"] and end_t - stop["start"] >= c.get("service_min", 0):
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


# --- road segments and congestion ------------------------------------------------------------------------


@dataclass(frozen=True)
class Segments:
    """A site's congestion segments in local metres: pieces of haul-road centrelines and junction zones."""

    ids: list[str]
    kinds: list[str]  # "road" or "junction"
    limits: np.ndarray  # posted limit km/h (inf: none)
    lengths: np.ndarray  # metres (a junction zone: the diagonal of its bounding box)
    shapes: list[Any]
    tree: Any


def split_line(coords: np.ndarray, length_m: float) -> list[np.ndarray]:
    """A polyline cut into consecutive pieces of about ``length_m`` (the last absorbs the remainder)."""
    line = shapely.LineString(coords)
    total = line.length
    pieces = max(1, int(round(total / length_m)))
    cuts = np.linspace(0, total, pieces + 1)
    out = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        piece = shapely.ops.substring(line, a, b)
        out.append(np.asarray(piece.coords))
    return out


def assign_segments(segments: Segments, x: np.ndarray, y: np.ndarray, junction_inside: np.ndarray,
                    corridor_m: float) -> np.ndarray:
    """Index of the segment each position is on: the junction zone containing it, else the nearest road piece
    within the corridor; NONE off the roads."""
    result = np.full(len(x), NONE, dtype=np.int64)
    known = np.isfinite(x) & np.isfinite(y)
    if segments.tree is not None and known.any():
        rows = np.flatnonzero(known)
        points = shapely.points(x[rows], y[rows])
        pairs, _ = segments.tree.query_nearest(points, max_distance=corridor_m, return_distance=True, all_matches=False)
        result[rows[pairs[0]]] = pairs[1]
    junction = junction_inside.argmax(axis=1) if junction_inside.size else np.zeros(len(x), np.int64)
    in_junction = junction_inside.any(axis=1) if junction_inside.size else np.zeros(len(x), bool)
    road_count = len(segments.ids) - junction_inside.shape[1] if junction_inside.size else len(segments.ids)
    return np.where(in_junction, road_count + junction, result)


def congested_runs(minutes: np.ndarray, slow: np.ndarray, min_minutes: int) -> list[tuple[int, int]]:
    """Runs of consecutive slow minutes (epoch ms, one segment) longer than ``min_minutes`` minutes:
    (first minute, minute after the last)."""
    runs = []
    order = np.argsort(minutes)
    m, s = minutes[order], slow[order]
    start = None
    previous = None
    for minute, is_slow in zip(m, s, strict=True):
        if is_slow and start is not None and previous is not None and minute - previous == 60_000:
            previous = minute
            continue
        if start is not None and (previous - start) // 60_000 + 1 > min_minutes:
            runs.append((int(start), int(previous) + 60_000))
        start, previous = (minute, minute) if is_slow else (None, None)
    if start is not None and (previous - start) // 60_000 + 1 > min_minutes:
        runs.append((int(start), int(previous) + 60_000))
    return runs


# --- queueing model for the recommendation ---------------------------------------------------------------


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
