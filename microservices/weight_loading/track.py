"""Haul cycles from the track, for a hauler whose payload signal cannot tell them (stuck, absent, implausible).

Why: payload is the one signal the weight-loading phase machine (``detect.py``) reads, and on a mixed, old
fleet it is often dead; positions are the one thing every tracker sends. A loaded leg is then what the
haul cycle looks like on the map (docs/DOMAIN.md §Haul cycle): the hauler stands at a load area (loading takes
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

Incremental and deterministic like ``detect.py``: the walk over samples (``stops.py``, compiled) carries each
hauler's open stop (start, the fixes of its last seconds, evidence counters) and pending drive-off; its open leg
is carried beside it; a leg closes only once every sample it depends on exists, so any split of the telemetry
gives the same cycles. Python loops run over closed stops only, a few per hauler and hour.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import shapely

from microservices.weight_loading import stops
from microservices.weight_loading.settings import WeightLoadingSettings
from microservices.weight_loading.stops import NS
from sitepulse.geo import LocalFrame


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
    n, missing, pairs, changed, implausible, _ = (float(c) for c in counts)
    if n <= 0:
        return None
    if missing / n >= s.payload_fault_share:
        return "absent"
    if pairs > 0 and changed == 0:  # not one change across a load, a dump or a whole leg: frozen
        return "stuck"
    if implausible / max(n - missing, 1.0) >= s.payload_fault_share:
        return "implausible"
    return None


UNIT_BIN_S = 60  # loading units' positions are kept as means per minute of absolute time
UNIT_KEEP_S = 600  # ... for this long (a loading unit barely moves while it loads)


def unit_positions(saved: dict[str, Any], runs: list[tuple[str, int, int]], t: np.ndarray, lon: np.ndarray,
                   lat: np.ndarray, frame: LocalFrame, batch_start: int) -> dict[str, Any]:
    """Add loading units' fixes (``runs``: unit, start row, stop row, in time order) to their per-minute sums
    [minute, sx, sy, n] of metres on the frame's tangent plane (``near_xy``).

    Sums, not medians, so any split of the telemetry gives the same means; a minute is dropped once no stop
    ending in this batch (from ``batch_start``, ns) can look it up (``UNIT_KEEP_S`` before the minute before).
    """
    oldest = batch_start // (UNIT_BIN_S * NS) - 1 - UNIT_KEEP_S // UNIT_BIN_S
    # rows are never changed in place: the saved state's lists are shared until a minute is added or grows
    out = {k: v if not v or v[0][0] > oldest else [r for r in v if r[0] > oldest] for k, v in saved.items()}
    east, north = frame.metres_per_degree
    group_run, minute, sx, sy, n = stops.minute_sums(
        np.array([a for _, a, _ in runs], np.int64), np.array([b for _, _, b in runs], np.int64),
        np.asarray(t, np.int64), np.asarray(lon, float), np.asarray(lat, float),
        np.array([frame.origin_lon, frame.origin_lat, east, north, UNIT_BIN_S * NS]))
    sums = [list(r) for r in zip(minute.tolist(), sx.tolist(), sy.tolist(), n.tolist(), strict=True)]
    runs_of = group_run.tolist()
    first = 0
    for i in range(1, len(sums) + 1):  # each unit's new minutes after its saved ones
        if i < len(sums) and runs_of[i] == runs_of[first]:
            continue
        name = runs[runs_of[first]][0]
        rows, new = out.get(name, []), sums[first:i]
        if rows and rows[-1][0] == new[0][0]:  # the saved last minute goes on
            m, x0, y0, c = rows[-1]
            rows, new = rows[:-1], [[m, x0 + new[0][1], y0 + new[0][2], c + new[0][3]], *new[1:]]
        out[name] = [*rows, *(r for r in new if not rows or r[0] > rows[-1][0])]
        first = i
    return out


class ZoneTest:
    """Which stops are at a load area and which at a tipping area (polygons grown by a margin, in metres on the
    site frame's tangent plane, where a stop's position costs two multiplications and loading units' positions
    are summed); beside a loading unit (loader, excavator) counts as a load area too, for sites whose load areas
    are not drawn."""

    def __init__(self, site: Any, margin_m: float) -> None:
        from sitepulse.sitefile import ZoneType

        zones = list(site.zones) if site is not None else []
        self.frame = site.frame if zones else None
        self.margin_m = margin_m
        self.load = np.array([z.type == ZoneType.load for z in zones], bool)
        self.dump = np.array([z.type == ZoneType.dump for z in zones], bool)
        # (kind, id, grown polygon, bounds) of the load and tipping zones, in the site file's order (``kinds`` tests
        # every load zone before any tipping zone)
        self.shapes: list[tuple[str, str, Any, tuple[float, ...]]] = []
        for zone in zones:
            if zone.type in (ZoneType.load, ZoneType.dump):
                lon, lat = np.asarray(zone.polygon, float).T
                polygon = shapely.Polygon(np.column_stack(self.frame.near_xy(lon, lat)))
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

    def kinds(self, lon: np.ndarray, lat: np.ndarray, at: np.ndarray) -> list[tuple[str, str | None]]:
        """('load' | 'dump' | 'other', zone id or loading unit) of stops' positions (one zone test per zone for
        all of them); ``at``: when each stopped (ns), for the loading units' positions then."""
        n = len(lon)
        if self.frame is None:
            return [("other", None)] * n
        x, y = self.frame.near_xy(lon, lat)
        found: list[tuple[str, str | None] | None] = [None] * n
        undecided = np.ones(n, bool)
        for name in ("load", "dump"):  # a load zone wins over a tipping zone it overlaps
            for kind, zone_id, shape, _ in self.shapes:
                if kind == name and undecided.any():
                    inside = undecided & shapely.contains_xy(shape, x, y)
                    for i in np.flatnonzero(inside).tolist():
                        found[i] = (name, zone_id)
                    undecided &= ~inside
        for i in np.flatnonzero(undecided).tolist():
            unit = self.unit_near(float(x[i]), float(y[i]), int(at[i]))
            found[i] = ("load", unit) if unit is not None else ("other", None)
        return found  # type: ignore[return-value]

    def unit_near(self, x: float, y: float, at: int | None) -> str | None:
        """The loading unit within ``unit_radius_m`` of (x, y) (tangent plane) in the newest minute at or before
        ``at``."""
        if at is None or self.unit_radius_m <= 0:
            return None
        minute = at // (UNIT_BIN_S * NS)
        best, best_d = None, self.unit_radius_m
        for unit, rows in self.units.items():
            then = next((r for r in reversed(rows) if r[0] <= minute), None)  # rows in time order
            if then is None or then[0] <= minute - UNIT_KEEP_S // UNIT_BIN_S:
                continue
            _, sx, sy, n = then
            d = math.hypot(sx / n - x, sy / n - y)
            if d <= best_d:
                best, best_d = unit, d
        return best


def advance_all(runs: list[tuple[str, int, int]], t: np.ndarray, lat: np.ndarray, lon: np.ndarray, v: np.ndarray,
                p: np.ndarray, fuel: np.ndarray, eh: np.ndarray, rated: list[float], state: dict[str, Any],
                zones: ZoneTest, s: WeightLoadingSettings) -> tuple[list[list[dict]], dict[str, Any]]:
    """Feed each hauler's new samples (``runs``: hauler, start row, stop row of the arrays, in time order) through
    stops and legs: per hauler of ``runs``, its finished legs; and the new state (``{}`` at first).

    A finished leg is a dict with the cycle's times, positions, zones and counters, and ``evidence``: the
    payload counters (EVIDENCE) of the leg, its load stop and its dump, for ``payload_unusable``.
    """
    with np.errstate(invalid="ignore"):
        moving = v >= s.moving_kmh  # a sample without speed counts as standing (moving_kmh > 0)
    walked = stops.walk(runs, t, lat, lon, moving, p, fuel, eh, np.asarray(rated, float), state.get("walk", {}), s)
    open_legs = dict(state.get("legs", {}))
    out: list[list[dict]] = [[] for _ in runs]
    kinds_of = _stop_kinds(walked.stops, zones, s)
    for h, (name, _, _) in enumerate(runs):
        leg = open_legs.get(name)
        if not walked.seen[h] or not (walked.stops[h] or (leg is not None and leg["dump"] is not None)):
            continue  # nothing new, or no stop closed and no dump to close: the leg stays as it is
        st = {"leg": leg}
        for stop, kind in zip(walked.stops[h], kinds_of[h], strict=True):
            out[h] += _close_stop(stop, kind, st, s)
        out[h] += _close_dump_if_left(st, walked.open_since[h], walked.last_t[h], s)
        if st["leg"] is None:
            open_legs.pop(name, None)
        else:
            open_legs[name] = st["leg"]
    return out, {"walk": walked.carried, "legs": open_legs}


def advance(t: np.ndarray, lat: np.ndarray, lon: np.ndarray, v: np.ndarray, p: np.ndarray, fuel: np.ndarray,
            eh: np.ndarray, state: dict[str, Any], rated: float, zones: ZoneTest, s: WeightLoadingSettings
            ) -> tuple[list[dict], dict[str, Any]]:
    """``advance_all`` for one hauler's samples."""
    [legs], new = advance_all([("hauler", 0, len(t))], t, lat, lon, v, p, fuel, eh, [rated], state, zones, s)
    return legs, new


def _stop_kinds(found: list[list[stops.Stop]], zones: ZoneTest, s: WeightLoadingSettings
                ) -> list[list[tuple[str, str | None] | None]]:
    """Where each closed stop was (``ZoneTest.kinds``, all haulers' at once), for stops long enough to be a load
    or a dump that have a position; None for the others."""
    out: list[list[tuple[str, str | None] | None]] = [[None] * len(closed) for closed in found]
    if not any(found):
        return out
    least = min(s.load_stop_min_s, s.dump_stop_min_s)
    tested = [(h, i) for h, closed in enumerate(found) for i, stop in enumerate(closed)
              if stop.lat is not None and (stop.b - stop.a) / NS >= least]
    if tested:
        where = [found[h][i] for h, i in tested]
        # the loading units' positions of the last whole minute before the drive-off (already complete)
        kinds = zones.kinds(np.array([w.lon for w in where]), np.array([w.lat for w in where]),
                            np.array([w.b - UNIT_BIN_S * NS for w in where]))
        for (h, i), kind in zip(tested, kinds, strict=True):
            out[h][i] = kind
    return out


def _close_stop(stop: stops.Stop, where: tuple[str, str | None] | None, st: dict, s: WeightLoadingSettings
                ) -> list[dict]:
    """A stop ended at its drive-off (``where``: its zone, when tested): feed it to the leg (load -> dump) and
    return a leg it finished."""
    legs: list[dict] = []
    length = (stop.b - stop.a) / NS
    leg = st.get("leg")
    if leg is not None and stop.gap:  # unseen for long since the leg's last stop: never stitched across
        if leg.get("dump") is not None:
            legs.append(_finish(leg))  # its dump was seen whole
        leg = None
    if leg is not None and leg.get("dump") is not None and stop.a >= leg["dump"]["b"] + s.dump_leave_s * NS:
        legs.append(_finish(leg))  # the hauler left the tipping area before this stop began
        leg = None
    can_load = length >= s.load_stop_min_s
    can_dump = length >= s.dump_stop_min_s and leg is not None
    kind, zone = where if (can_load or can_dump) and where is not None else ("other", None)
    if kind in ("load", "dump") and _loaded_throughout(stop):
        kind = "other"  # a loaded wait (in the pit after loading, at a stockpile on the way): neither load nor dump
    if stop.gap == 2:
        kind = "other"  # first seen standing after a long gap: its load or tip may have begun unseen
    if not ((kind == "load" and can_load) or (kind == "dump" and can_dump)):  # neither a load nor a dump of a leg
        st["leg"] = leg
        return legs
    record = {"a": stop.a, "b": stop.b, "c0": stop.c0, "c1": stop.c1, "lat": stop.lat, "lon": stop.lon,
              "f0": stop.f0, "e0": stop.e0, "f1": stop.f1, "e1": stop.e1, "zone": zone}
    if kind == "load":
        if leg is not None and leg.get("dump") is not None:
            legs.append(_finish(leg))
        leg = {"load": record, "dump": None}
    else:
        if leg["dump"] is None:
            leg["dump"] = {**record, "first": record["a"], "first_c0": record["c0"]}
        else:
            leg["dump"] = {**record, "first": leg["dump"]["first"], "first_c0": leg["dump"]["first_c0"]}
    st["leg"] = leg
    return legs


def _loaded_throughout(stop: stops.Stop) -> bool:
    """The payload readings of a stop were alive (they changed, in range) and none was of an empty body: the hauler
    stood loaded, so it was neither loaded there (a load starts empty) nor did it tip there. Without live readings
    (absent, frozen, out of range) nothing is known and the zone decides."""
    n, missing, _, changed, implausible, low = (float(b) - float(a) for a, b in zip(stop.c0, stop.c1, strict=True))
    return n > missing and changed > 0 and implausible == 0 and low == 0


def _close_dump_if_left(st: dict, stop_since: int | None, last_t: int, s: WeightLoadingSettings) -> list[dict]:
    """Close a dump once no later stop can still join it (none began within ``dump_leave_s`` of its end)."""
    leg = st.get("leg")
    if leg is None or leg.get("dump") is None:
        return []
    earliest = stop_since if stop_since is not None else last_t + 1
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
