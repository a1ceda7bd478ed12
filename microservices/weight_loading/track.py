"""Haul cycles from the track, for a hauler whose payload signal cannot tell them (stuck, absent, implausible).

Why: payload is the one signal the weight-loading phase machine (``detect.py``) reads, and on a mixed, old
fleet it is often dead; positions are the one thing every tracker sends. A loaded leg is then what the
haul cycle looks like on the map (DOMAIN.md, Haul cycle): the hauler stands at a load area (loading takes
several loader passes), drives, and stands at a tipping area (dump, crusher, stockpile) while it tips. So:

1. **stops**: standing (fused speed below ``moving_kmh``) until it drives off (keeps moving for
   ``min_drive_off_s``, the same drive-off as the payload machine); where it stood is the median position of
   its last ``stop_position_s`` of standing (where it was loaded, not where it queued before creeping up); a stop
   is tested against the site's load and tipping zones (grown by ``zone_margin_m`` for GNSS error), or is at a
   load area when it is within ``loader_radius_m`` of a loading unit (loader, excavator: its mean fix of the
   last whole minute before the drive-off), for load areas not drawn;
2. **a leg**: the last stop of at least ``load_stop_min_s`` at a load zone before a stop of at least
   ``dump_stop_min_s`` at a tipping zone; tipping stops less than ``dump_leave_s`` apart are one dump (a queue,
   then the tip), so ``dumped_at`` is the drive-off from the last of them;
3. **could the payload show this leg?** A leg the payload machine found a cycle in is its cycle. Any other
   leg is a cycle only when its payload readings were faulty in at least ``payload_fault_share`` of the
   samples of the leg (load start to the end of the dump), of its load stop or of its dump: missing, out of
   physical range, or unchanged from one sample
   to the next while moving (the health check's "stuck": a weighing system reads body bounce while driving).
   Such a cycle is marked ``payload_source = 'none'``: its tonnes are unknown, never shown as measured. A leg
   with healthy readings and no payload cycle (an empty hauler that stood at a loader and at a dump) is no
   cycle, so fault-free answers do not change.

Incremental and deterministic like ``detect.py``: each hauler carries its open stop (start, the fixes of its
last seconds, evidence counters), its pending drive-off and its open leg in the state; a leg closes only
once every sample it depends on exists, so any split of the telemetry gives the same cycles. Loops run over
standing/moving runs and stops, never over samples.
"""

from __future__ import annotations

import bisect
import copy
from typing import Any

import numpy as np
import shapely

from microservices.weight_loading.settings import WeightLoadingSettings

NS = 1_000_000_000
# evidence counters, cumulative per hauler: samples, payload missing, moving pairs with payload, unchanged pairs,
# readings out of physical range
EVIDENCE = ("n", "missing", "moving", "unchanged", "implausible")


def evidence(p: np.ndarray, moving: np.ndarray, last_p: float | None, rated: float | np.ndarray,
             s: WeightLoadingSettings, starts: np.ndarray | None = None) -> np.ndarray:
    """Per-sample payload evidence (samples x EVIDENCE), given the hauler's last payload before the batch.

    For a whole batch at once, ``starts`` marks each machine's first row (its previous reading is unknown
    here: ``quiet_step`` adds it from the state) and ``rated`` is per row.
    """
    prev = np.r_[np.nan if last_p is None else last_p, p[:-1]]
    if starts is not None:
        prev[starts] = np.nan
    has = np.isfinite(p)
    pair = moving & has & np.isfinite(prev)
    out = np.zeros((len(p), len(EVIDENCE)))
    out[:, 0] = 1.0
    out[:, 1] = ~has
    out[:, 2] = pair
    out[:, 3] = pair & (p == prev)
    with np.errstate(invalid="ignore"):
        out[:, 4] = has & ((p < -s.tare_min_fraction * rated) | (p > s.payload_max_fraction * rated))
    return out


def payload_unusable(windows: list[list[float]], s: WeightLoadingSettings) -> str | None:
    """Why the payload readings of a leg could not show its load (None when nothing was wrong with them).

    ``windows``: the evidence counters of the whole leg, of its load stop and of its dump; a fault in the
    load or the dump alone hides the cycle from the payload machine as well as one through the leg.
    """
    for counts in windows:
        why = _unusable(counts, s)
        if why is not None:
            return why
    return None


def _unusable(counts: list[float], s: WeightLoadingSettings) -> str | None:
    n, missing, moving, unchanged, implausible = (float(c) for c in counts)
    if n <= 0:
        return None
    if missing / n >= s.payload_fault_share:
        return "absent"
    if moving > 0 and unchanged / moving >= s.payload_fault_share:
        return "stuck"
    if implausible / max(n - missing, 1.0) >= s.payload_fault_share:
        return "implausible"
    return None


UNIT_BIN_S = 60  # loading units' positions are kept as means per minute of absolute time
UNIT_KEEP_S = 600  # ... for this long (a loading unit barely moves while it loads)


def unit_positions(saved: dict[str, Any], unit: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray,
                   batch_start: int) -> dict[str, Any]:
    """Add loading units' fixes (rows sorted by unit, time) to their per-minute sums [minute, sx, sy, n].

    Sums, not medians, so any split of the telemetry gives the same means; a minute is dropped once no stop
    ending in this batch (from ``batch_start``, ns) can look it up (``UNIT_KEEP_S`` before the minute before).
    """
    oldest = batch_start // (UNIT_BIN_S * NS) - 1 - UNIT_KEEP_S // UNIT_BIN_S
    out = {k: [list(r) for r in v if r[0] > oldest] for k, v in saved.items()}
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return out
    unit, t, x, y = unit[ok], t[ok], x[ok], y[ok]
    minute = t // (UNIT_BIN_S * NS)
    starts = np.flatnonzero(np.r_[True, (unit[1:] != unit[:-1]) | (minute[1:] != minute[:-1])])
    sx, sy = np.add.reduceat(x, starts), np.add.reduceat(y, starts)
    n = np.diff(np.r_[starts, len(t)])
    for i, a in enumerate(starts.tolist()):
        rows = out.setdefault(str(unit[a]), [])
        m = int(minute[a])
        if rows and rows[-1][0] == m:
            rows[-1] = [m, rows[-1][1] + float(sx[i]), rows[-1][2] + float(sy[i]), rows[-1][3] + int(n[i])]
        elif not rows or rows[-1][0] < m:
            rows.append([m, float(sx[i]), float(sy[i]), int(n[i])])
    return out


class ZoneTest:
    """Which stops are at a load area and which at a tipping area (polygons grown by a margin, local metres);
    beside a loading unit (loader, excavator) counts as a load area too, for sites whose load areas are not drawn."""

    def __init__(self, site: Any, margin_m: float) -> None:
        from sitepulse.sitefile import ZoneType
        from sitepulse.zones import ZoneIndex

        self.index = ZoneIndex(site) if site is not None and site.zones else None
        self.margin_m = margin_m
        zones = self.index.zones if self.index is not None else []
        self.load = np.array([z.type == ZoneType.load for z in zones], bool)
        self.dump = np.array([z.type == ZoneType.dump for z in zones], bool)
        self.ids = [z.id for z in zones]
        # (kind, id, grown polygon, bounds) of the load and tipping zones, load first as in ZoneIndex's priority
        self.shapes: list[tuple[str, str, Any, tuple[float, ...]]] = []
        for zone, polygon in zip(zones, self.index.polygons if self.index is not None else [], strict=True):
            if zone.type in (ZoneType.load, ZoneType.dump):
                grown = polygon.buffer(margin_m) if margin_m else polygon
                shapely.prepare(grown)
                self.shapes.append((zone.type.value, zone.id, grown, grown.bounds))
        self.units: dict[str, list[list[float]]] = {}  # loading units' minute sums, per batch (with_units)
        self.unit_radius_m = 0.0

    def with_units(self, units: dict[str, list[list[float]]], radius_m: float) -> ZoneTest:
        """This zone test with a batch's loading units (the prepared zones shared, the shared test untouched)."""
        view = copy.copy(self)
        view.units, view.unit_radius_m = units, radius_m
        return view

    @property
    def usable(self) -> bool:
        """A tipping zone is drawn, and a load zone or loading units are known: else a stop says nothing."""
        return bool(self.dump.any() and (self.load.any() or self.unit_radius_m > 0))

    def kind(self, x: float | None, y: float | None, at: int | None = None) -> tuple[str, str | None]:
        """('load' | 'dump' | 'other', zone id or loading unit) of a stop's position (None: no fix while it
        stood); ``at``: when it stopped (ns), for the loading units' positions then."""
        if self.index is None or x is None or y is None:
            return "other", None
        for name in ("load", "dump"):
            for kind, zone_id, shape, (x0, y0, x1, y1) in self.shapes:
                if kind == name and x0 <= x <= x1 and y0 <= y <= y1 and shapely.contains_xy(shape, x, y):
                    return name, zone_id
        unit = self.unit_near(x, y, at)
        return ("load", unit) if unit is not None else ("other", None)

    def unit_near(self, x: float, y: float, at: int | None) -> str | None:
        """The loading unit within ``unit_radius_m`` of (x, y) in the newest minute at or before ``at``."""
        if at is None or self.unit_radius_m <= 0:
            return None
        minute = at // (UNIT_BIN_S * NS)
        best, best_d = None, self.unit_radius_m
        for unit, rows in self.units.items():
            then = next((r for r in reversed(rows) if r[0] <= minute), None)  # rows in time order
            if then is None or then[0] <= minute - UNIT_KEEP_S // UNIT_BIN_S:
                continue
            _, sx, sy, n = then
            d = float(np.hypot(sx / n - x, sy / n - y))
            if d <= best_d:
                best, best_d = unit, d
        return best


def _place(stop: dict[str, Any], fixes: tuple[np.ndarray, ...], a: int, b: int, span: int,
           fixed: np.ndarray | None = None) -> None:
    """Keep the fixes (t, x, y, lat, lon) of the stop's last ``span`` ns of standing (samples a..b-1 stand).
    ``fixed``: which samples have a whole fix, when the caller has it for all of them."""
    t, x, y, lat = fixes[:4]
    a = max(a, int(np.searchsorted(t, t[b - 1] - span, side="right")))
    here = fixed[a:b] if fixed is not None else np.isfinite(x[a:b]) & np.isfinite(y[a:b]) & np.isfinite(lat[a:b])
    if not here.any():
        return
    if not stop["ts"]:  # a new stop: these fixes are all within span of its newest (the common case)
        for key, values in zip(("ts", "xs", "ys", "la", "lo"), fixes, strict=True):
            stop[key] = values[a:b][here].tolist()
        return
    for key, values in zip(("ts", "xs", "ys", "la", "lo"), fixes, strict=True):
        stop[key] += values[a:b][here].tolist()
    first = bisect.bisect_right(stop["ts"], stop["ts"][-1] - span)
    if first:
        for key in ("ts", "xs", "ys", "la", "lo"):
            del stop[key][:first]


def quiet_step(st: dict[str, Any], fixes: tuple[np.ndarray, ...], moving: np.ndarray, p: np.ndarray,
               totals: np.ndarray, s: WeightLoadingSettings) -> dict[str, Any] | None:
    """The new state when no stop can begin or end in these samples (driving throughout with no stop open and
    no dump to close yet, or standing throughout in an open stop), from the batch's evidence ``totals`` of them;
    None when ``advance`` must look. Most steps of a live fleet are one of these: it spares the per-sample work.
    ``fixes``: (t, x, y, lat, lon) of the samples."""
    t = fixes[0]
    leg, stop = st.get("leg"), st.get("stop")
    if t[0] <= int(st.get("t", -1)):
        return None
    dump = None if leg is None else leg.get("dump")
    # driving on with no stop open, and no dump that these samples could close (it closes dump_leave_s after it)
    driving = stop is None and (dump is None or int(t[-1]) + 1 < dump["b"] + s.dump_leave_s * NS) and moving.all()
    standing = stop is not None and stop["k"] is None and not moving.any()
    if not (driving or standing):
        return None
    totals = totals.copy()
    last_p = st.get("lp")
    if last_p is not None and p[0] == p[0] and moving[0]:  # the first sample's pair with the reading before
        totals[2] += 1
        totals[3] += p[0] == last_p
    out = {"t": int(t[-1]), "lp": _num(p[-1])}
    if standing:
        stop = {**stop, **{k: list(stop[k]) for k in ("ts", "xs", "ys", "la", "lo")}}
        _place(stop, fixes, 0, len(t), int(s.stop_position_s * NS))
        out["stop"] = stop
    if leg is not None:
        out["leg"] = leg
    if leg is not None or stop is not None:  # counters matter only while a stop or leg is open (differences)
        out["cum"] = [int(v) for v in np.asarray(st.get("cum", [0] * len(EVIDENCE)), float) + totals]
    return out


def advance(t: np.ndarray, x: np.ndarray, y: np.ndarray, lat: np.ndarray, lon: np.ndarray, v: np.ndarray,
            p: np.ndarray, fuel: np.ndarray, eh: np.ndarray, st: dict[str, Any], rated: float, zones: ZoneTest,
            s: WeightLoadingSettings, batch_evidence: np.ndarray | None = None) -> tuple[list[dict], dict[str, Any]]:
    """Feed one hauler's new samples (time order) through stops and legs: finished legs, and the new state.

    A finished leg is a dict with the cycle's times, positions, zones and counters, and ``evidence``: the
    payload counters (EVIDENCE) of the leg, its load stop and its dump, for ``payload_unusable``.
    ``batch_evidence``: these samples' rows of the batch's ``evidence`` pass (first reading's pair unknown), if
    the caller has it.
    """
    st = dict(st)
    last_t = int(st.get("t", -1))
    newer = t > last_t  # a sample at or before the last one seen was seen already (a replay restores the state)
    if not newer.all():
        t, x, y, lat, lon, v, p, fuel, eh = (a[newer] for a in (t, x, y, lat, lon, v, p, fuel, eh))
        batch_evidence = None
    legs: list[dict] = []
    if len(t) == 0:
        return legs, st
    with np.errstate(invalid="ignore"):
        moving = v >= s.moving_kmh  # a sample without speed counts as standing (moving_kmh > 0)
    if batch_evidence is None:
        ev = evidence(p, moving, st.get("lp"), rated, s)
    else:  # the batch's pass, with the first reading's pair with the one before this batch
        ev, last_p = batch_evidence.copy(), st.get("lp")
        if last_p is not None and np.isfinite(last_p) and np.isfinite(p[0]) and moving[0]:
            ev[0, 2], ev[0, 3] = 1.0, float(p[0] == last_p)
    start = np.asarray(st.get("cum", [0.0] * len(EVIDENCE)), float)
    before = np.empty((len(t) + 1, len(EVIDENCE)))
    before[0] = start
    np.cumsum(ev, axis=0, out=before[1:])
    before[1:] += start
    cum = before[1:]  # counters after sample i; before[i]: before it
    span = int(s.min_drive_off_s * NS)
    pos_span = int(s.stop_position_s * NS)
    stop: dict[str, Any] | None = st.get("stop")  # open stop: a, c0, xs, ys, la, lo, f0, e0, k (drive-off)

    def begin(i: int) -> dict[str, Any]:
        return {"a": int(t[i]), "c0": before[i].tolist(), "ts": [], "xs": [], "ys": [], "la": [], "lo": [],
                "f0": _num(fuel[i]), "e0": _num(eh[i]), "k": None}

    fixed = np.isfinite(x) & np.isfinite(y) & np.isfinite(lat)

    def place(open_stop: dict[str, Any], a: int, b: int) -> None:
        _place(open_stop, (t, x, y, lat, lon), a, b, pos_span, fixed)

    edges = [0, *(np.flatnonzero(moving[1:] != moving[:-1]) + 1).tolist()]  # runs of moving or standing
    for a, b in zip(edges, [*edges[1:], len(t)], strict=True):
        if not moving[a]:
            if stop is not None and stop["k"] is not None:  # standing again: did it move long enough before?
                if int(t[a]) > stop["k"]["t"] + span:
                    legs += _close_stop(stop, stop["k"], st, zones, s)
                    stop = None
                else:
                    stop["k"] = None  # a blip: still the same stop
            if stop is None:
                stop = begin(a)
            place(stop, a, b)
            continue
        if stop is None:
            continue  # driving on
        if stop["k"] is None:
            stop["k"] = {"t": int(t[a]), "c": before[a].tolist(), "f": _num(fuel[a]), "e": _num(eh[a])}
        if int(t[b - 1]) >= stop["k"]["t"] + span:  # kept moving long enough: drove off
            legs += _close_stop(stop, stop["k"], st, zones, s)
            stop = None
    st["stop"] = stop
    legs += _close_dump_if_left(st, stop, int(t[-1]), s)
    st["t"], st["lp"], st["cum"] = int(t[-1]), _num(p[-1]), cum[-1].astype(np.int64).tolist()
    if stop is None and st.get("leg") is None:  # nothing refers to the counters: start them again from zero
        st = {"t": st["t"], "lp": st["lp"]}
    return legs, st


def _num(value: float) -> float | None:
    return None if value != value else float(value)


def _median(values: list[float]) -> float:
    """Median of a short list of finite floats (a stop's fixes), as numpy's: the mean of the middle two."""
    ordered, n = sorted(values), len(values)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def _close_stop(stop: dict, k: dict, st: dict, zones: ZoneTest, s: WeightLoadingSettings) -> list[dict]:
    """A stop ended at drive-off ``k``: feed it to the leg (load -> dump) and return a leg it finished."""
    legs: list[dict] = []
    length = (k["t"] - stop["a"]) / NS
    leg = st.get("leg")
    if leg is not None and leg.get("dump") is not None and stop["a"] >= leg["dump"]["b"] + s.dump_leave_s * NS:
        legs.append(_finish(leg))  # the hauler left the tipping area before this stop began
        leg = None
    can_load = length >= s.load_stop_min_s
    can_dump = length >= s.dump_stop_min_s and leg is not None
    kind, zone, where = "other", None, [None] * 4
    if (can_load or can_dump) and stop["xs"]:  # else neither a load nor a dump of a leg: no zone test
        where = [_median(stop[key]) for key in ("xs", "ys", "la", "lo")]
        # the loading units' positions of the last whole minute before the drive-off (already complete)
        kind, zone = zones.kind(where[0], where[1], k["t"] - UNIT_BIN_S * NS)
    record = {"a": stop["a"], "b": k["t"], "c0": stop["c0"], "c1": k["c"], "lat": where[2], "lon": where[3],
              "f0": stop["f0"], "e0": stop["e0"], "f1": k["f"], "e1": k["e"], "zone": zone}
    if kind == "load" and can_load:
        if leg is not None and leg.get("dump") is not None:
            legs.append(_finish(leg))
        leg = {"load": record, "dump": None}
    elif kind == "dump" and can_dump:
        if leg["dump"] is None:
            leg["dump"] = {**record, "first": record["a"], "first_c0": record["c0"]}
        else:
            leg["dump"] = {**record, "first": leg["dump"]["first"], "first_c0": leg["dump"]["first_c0"]}
    st["leg"] = leg
    return legs


def _close_dump_if_left(st: dict, stop: dict | None, last_t: int, s: WeightLoadingSettings) -> list[dict]:
    """Close a dump once no later stop can still join it (none began within ``dump_leave_s`` of its end)."""
    leg = st.get("leg")
    if leg is None or leg.get("dump") is None:
        return []
    earliest = stop["a"] if stop is not None else last_t + 1
    if earliest >= leg["dump"]["b"] + s.dump_leave_s * NS:
        st["leg"] = None
        return [_finish(leg)]
    return []


def _finish(leg: dict) -> dict:
    """A finished leg: cycle times and positions, and the evidence counted from load start to the end of the dump."""
    load, dump = leg["load"], leg["dump"]
    windows = [(load["c0"], dump["c1"]), (load["c0"], load["c1"]), (dump["first_c0"], dump["c1"])]
    counts = [[float(j) - float(i) for i, j in zip(a, b, strict=True)] for a, b in windows]
    return {"load_start": load["a"], "loaded_at": load["b"], "haul_start": load["b"], "dump_start": dump["first"],
            "dumped_at": dump["b"], "load_lat": load["lat"], "load_lon": load["lon"], "dump_lat": dump["lat"],
            "dump_lon": dump["lon"], "fuel0": load["f0"], "eh0": load["e0"], "fuel1": dump["f1"], "eh1": dump["e1"],
            "load_zone": load["zone"], "dump_zone": dump["zone"], "evidence": counts}
