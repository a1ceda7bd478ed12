"""What final samples become: the stored track, activity per minute, zone entries and visits, speeding episodes,
and their alerts.

Facts used (docs/DOMAIN.md §Positioning): a zone visit needs a minimum dwell (SitePulse default 5 s) and
hysteresis at the border. Everything is derived from final samples only and summed in integer
milliseconds and millimetres, so any split of the same telemetry into batches gives the same rows.
Python loops run over machines, zone series or visits, never over samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from microservices.positioning.layout import ZONE_TYPES
from microservices.positioning.track import Final, Setup
from microservices.sdk import Outputs
from microservices.series import stamps
from microservices.shifts import shift_columns
from sitepulse.sitefile import ZoneType

IN, BAND, OUT = 1, 0, -1  # a sample inside the polygon, in the border band, or outside the grown polygon
OFF, IDLE, MOVING = 0, 1, 2
STATE_NAMES = np.array(["off", "idle", "moving"], dtype=object)


def write_track(out: Outputs, final: Final, machines: dict[str, Any], setup: Setup) -> None:
    """One cleaned position (with its raw fix) per machine per track interval."""
    ids, g, ts, x, y = final.ids, final.g, final.t, final.x, final.y
    interval = int(setup.settings.track_interval_s * 1000)
    bucket = ts // interval
    previous = np.r_[-1, bucket[:-1]]
    for row in np.flatnonzero(final.first):
        carried_bucket = (machines.get(ids[g[row]]) or {}).get("bucket")
        previous[row] = -1 if carried_bucket is None else carried_bucket
    pick = np.flatnonzero(bucket != previous)
    if len(pick) == 0:
        return
    lon, lat = setup.frame.to_lonlat(x[pick], y[pick])
    out.write("track", pd.DataFrame({
        "machine_id": ids[g[pick]],
        "ts": stamps(ts[pick]),
        "lat": np.round(lat, 7),
        "lon": np.round(lon, 7),
        "raw_lat": final.raw_lat[pick],
        "raw_lon": final.raw_lon[pick],
        "x_m": np.round(x[pick], 2),
        "y_m": np.round(y[pick], 2),
        "speed_kmh": final.speed[pick],
        "heading_deg": final.heading[pick],
        "state": STATE_NAMES[final.motion[pick]],
        "zone": final.zone_id[pick],
        "jump": final.jump[pick],
        "carried": final.carried[pick],
    }))


def write_activity(out: Outputs, final: Final, machines: dict[str, Any], setup: Setup) -> None:
    """Per machine and minute: distance, moving/idle/off time and time per zone type, as exact integers.

    Each interval between consecutive final samples takes the state of its first sample; its distance is
    the mean of the two speeds over ground times its length (an odometer that GNSS noise and jumps cannot
    inflate, zero while standing), or the straight line between cleaned fixes where no speed is known.
    """
    ids, g, ts, x, y, speed = final.ids, final.g, final.t, final.x, final.y, final.travel
    prev_t = final.previous(machines, ts.astype(float), "t")
    prev_speed = final.previous(machines, speed, "travel")
    prev_motion = final.previous(machines, final.motion.astype(float), "motion")
    prev_zone = final.previous(machines, final.zone_type.astype(float), "zone_type")
    prev_x = final.previous(machines, x, "x")
    prev_y = final.previous(machines, y, "y")
    has = np.isfinite(prev_t)
    if not has.any():
        return
    dt = np.where(has, ts - np.nan_to_num(prev_t), 0).astype(np.int64)
    counted = has & (dt <= int(setup.settings.gap_carry_s * 1000)) & (dt > 0)
    with np.errstate(invalid="ignore"):
        by_speed = (prev_speed + speed) / 2 / 3.6 * dt  # km/h * ms -> mm
        by_line = np.hypot(x - prev_x, y - prev_y) * 1000
    distance = np.where(np.isfinite(by_speed) & counted, by_speed, np.where(np.isfinite(by_line), by_line, 0))
    distance = np.where(has, distance, 0)
    frame = pd.DataFrame({
        "machine_id": ids[g],
        "minute": (np.nan_to_num(prev_t).astype(np.int64) // 60_000) * 60_000,
        "distance_mm": np.rint(distance).astype(np.int64),
        "moving_ms": np.where(counted & (prev_motion == MOVING), dt, 0),
        "idle_ms": np.where(counted & (prev_motion == IDLE), dt, 0),
        "off_ms": np.where(counted & (prev_motion == OFF), dt, 0),
        **{f"{kind}_ms": np.where(counted & (prev_zone == code), dt, 0) for code, kind in enumerate(ZONE_TYPES)},
        "none_ms": np.where(counted & (prev_zone == len(ZONE_TYPES)), dt, 0),
        "samples": counted.astype(np.int64),
    })[has]
    sums = frame.groupby(["machine_id", "minute"], sort=True).sum().reset_index()
    shift_date, shift = shift_columns(sums["minute"].to_numpy(np.int64), setup.site)
    sums.insert(2, "shift_date", shift_date)
    sums.insert(3, "shift", shift)
    sums["minute"] = stamps(sums["minute"].to_numpy(np.int64))
    out.write("activity", sums)


def write_zones(out: Outputs, final: Final, machines: dict[str, Any], setup: Setup,
                updates: dict[str, dict[str, Any]]) -> None:
    """Zone entries as soon as confirmed, zone visits once their exit is confirmed; restricted entries alert."""
    model, settings = setup.layout, setup.settings
    ids, g, ts = final.ids, final.g, final.t
    kind = np.where(final.inside, IN, np.where(final.near, BAND, OUT)).astype(np.int8)
    kind[~np.isfinite(final.x)] = BAND  # position unknown: hold the current state
    sure = final.sure & final.inside
    dwell_out = int(round(settings.min_dwell_s * 1000))
    entries, visits = [], []
    zones = model.index.zones
    for code, machine in enumerate(ids):
        own = np.flatnonzero(g == code)
        if len(own) == 0:
            continue
        carried = dict((machines.get(machine) or {}).get("zones") or {})
        near = set(np.flatnonzero((kind[own] != OUT).any(axis=0)).tolist())
        series_state = {}
        for column, zone in enumerate(zones):
            if column not in near and zone.id not in carried:
                continue
            dwell_in = settings.restricted_min_dwell_s if model.restricted[column] else settings.min_dwell_s
            done, entered, new_state = zone_series(ts[own], kind[own, column], carried.get(zone.id),
                                                   int(round(dwell_in * 1000)), dwell_out, sure[own, column],
                                                   final.held_from[own])
            for start in entered:
                entries.append((machine, zone, start))
            for start, end in done:
                visits.append((machine, zone, start, end))
            if new_state is not None:
                series_state[zone.id] = new_state
        updates.setdefault(machine, {})["zones"] = series_state
    if entries:
        out.write("zone_entries", pd.DataFrame({
            "machine_id": [e[0] for e in entries],
            "zone": [e[1].id for e in entries],
            "zone_type": [e[1].type.value for e in entries],
            "entered_at": stamps(np.array([e[2] for e in entries], dtype=np.int64)),
        }))
        for machine, zone, start in entries:
            if zone.type == ZoneType.restricted:
                at = stamps(start).to_pydatetime()
                out.alert(f"restricted-entry:{machine}:{zone.id}:{at.isoformat()}",
                          f"{machine} entered restricted zone {zone.name or zone.id} at {at:%H:%M:%S} UTC",
                          level="critical", at=at, machine_id=machine,
                          data={"zone": zone.id, "entered_at": at.isoformat()})
    if visits:
        starts = np.array([v[2] for v in visits], dtype=np.int64)
        ends = np.array([v[3] for v in visits], dtype=np.int64)
        out.write("zone_visits", pd.DataFrame({
            "machine_id": [v[0] for v in visits],
            "zone": [v[1].id for v in visits],
            "zone_type": [v[1].type.value for v in visits],
            "entered_at": stamps(starts),
            "left_at": stamps(ends),
            "dwell_s": (ends - starts) / 1000.0,
        }))


def write_speeding(out: Outputs, final: Final, machines: dict[str, Any], setup: Setup,
                   updates: dict[str, dict[str, Any]]) -> None:
    """Speeding episodes per machine against the lowest applicable zone or road limit; each alerts."""
    settings, ids, g, ts, speed = setup.settings, final.ids, final.g, final.t, final.speed
    heading = np.where(np.isfinite(final.course) & (speed >= max(settings.moving_kmh, 1.0)), final.course, np.nan)
    limit, source = setup.layout.limits(final.x, final.y, heading, final.inside, settings.path_corridor_m)
    over = np.nan_to_num(speed, nan=0.0) > limit + settings.speeding_tolerance_kmh
    episodes = []
    for code, machine in enumerate(ids):
        own = np.flatnonzero(g == code)
        carried = (machines.get(machine) or {}).get("speeding")
        if len(own) == 0 or (carried is None and not over[own].any()):
            updates.setdefault(machine, {})["speeding"] = carried
            continue
        found, open_ = speeding_series(ts[own], over[own], speed[own], limit[own], source[own], carried,
                                       int(round(settings.speeding_min_s * 1000)),
                                       int(round(settings.gap_carry_s * 1000)))
        episodes += [(machine, e) for e in found]
        updates.setdefault(machine, {})["speeding"] = open_
    if not episodes:
        return
    out.write("speeding", pd.DataFrame({
        "machine_id": [m for m, _ in episodes],
        "zone": [e["source"] for _, e in episodes],
        "started_at": stamps(np.array([e["start"] for _, e in episodes], dtype=np.int64)),
        "ended_at": stamps(np.array([e["end"] for _, e in episodes], dtype=np.int64)),
        "duration_s": [(e["end"] - e["start"]) / 1000.0 for _, e in episodes],
        "max_speed_kmh": [round(e["max"], 1) for _, e in episodes],
        "limit_kmh": [e["limit"] for _, e in episodes],
    }))
    for machine, e in episodes:
        at = stamps(e["start"]).to_pydatetime()
        out.alert(f"speeding:{machine}:{at.isoformat()}",
                  f"{machine} drove {e['max']:.0f} km/h where the limit is {e['limit']:.0f} km/h "
                  f"({e['source']}) for {(e['end'] - e['start']) / 1000:.0f} s",
                  level="warning", at=at, machine_id=machine,
                  data={"zone": e["source"], "max_speed_kmh": round(e["max"], 1), "limit_kmh": e["limit"],
                        "ended_at": stamps(e["end"]).isoformat()})


def motion_state(speed_kmh: np.ndarray, engine_on: np.ndarray, moving_kmh: float) -> np.ndarray:
    """off (engine off), moving (speed at or above the threshold) or idle, as OFF/IDLE/MOVING codes."""
    off = np.asarray(engine_on, dtype=float) == 0.0  # NaN (not reported) counts as on
    moving = np.nan_to_num(speed_kmh, nan=0.0) >= moving_kmh
    return np.where(off, OFF, np.where(moving, MOVING, IDLE)).astype(np.int8)


def zone_series(t: np.ndarray, kind: np.ndarray, carried: dict[str, Any] | None, dwell_in_ms: int,
                dwell_out_ms: int, sure: np.ndarray | None = None, held_from: np.ndarray | None = None
                ) -> tuple[list[tuple[int, int]], list[int], dict[str, Any] | None]:
    """One machine in one zone: confirmed visits (entered, left) and entries, with hysteresis and minimum dwell.

    ``kind`` is IN (inside the polygon), BAND (outside it but inside the polygon grown by the border
    margin, or position unknown) or OUT per sample. An entry is a run of IN samples lasting at least
    ``dwell_in_ms`` (from its first sample to the first sample after it); an exit a run of OUT samples
    lasting ``dwell_out_ms``. Entered = first IN sample of the entry run; left = first sample after the
    last IN sample before the exit run, so the margin delays the decision, not the reported time.
    ``sure`` (default: every IN sample) marks samples inside by the entry margin: an entry is confirmed only once
    such a sample has been seen since the machine was last beyond the exit margin (at the end of its run at the
    latest), so a noisy position skimming the border never confirms a visit, while the entry time stays the
    first sample inside. ``held_from`` (default ``t``) is when the machine took each sample's position: a
    standing machine's averaged position holds since it stopped, so a standing truck found inside once its mean
    settles entered when it stopped (not before it was last beyond the margin). ``carried`` is the series' state
    after the previous samples (None: outside, nothing pending).
    """
    c = carried or {"in": False, "entered": None, "kind": OUT, "start": None, "last": None, "left": None,
                    "sure": False}
    sure = kind == IN if sure is None else np.asarray(sure, dtype=bool) & (kind == IN)
    change = np.flatnonzero(np.diff(kind)) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, len(kind)] - 1
    run_sure = np.maximum.reduceat(sure, starts) if len(kind) else np.zeros(0, bool)
    run_kind = kind[starts].astype(np.int64)
    run_start = t[starts].astype(np.int64)
    run_last = t[ends].astype(np.int64)
    run_held = (t if held_from is None else held_from)[starts].astype(np.int64)
    if c["start"] is not None:
        if run_kind[0] == c["kind"]:
            run_start[0] = c["start"]
            run_held[0] = c.get("held", c["start"])
        else:
            run_kind = np.r_[c["kind"], run_kind]
            run_start = np.r_[c["start"], run_start]
            run_last = np.r_[c["last"], run_last]
            run_sure = np.r_[False, run_sure]
            run_held = np.r_[c.get("held", c["start"]), run_held]
    count = len(run_kind)
    has_next = np.arange(count) < count - 1
    next_start = np.r_[run_start[1:], -1]
    end_time = np.where(has_next, next_start, run_last)
    segment = np.cumsum(run_kind == OUT)  # runs since the machine was last beyond the margin share a segment
    # a sure sample seen in the segment by the end of each run (a state from before "sure" was kept: seen)
    seen = segment_cumany(segment, run_sure | ((segment == 0) & bool(c.get("sure", True))))
    entry = (run_kind == IN) & (end_time - run_start >= dwell_in_ms) & seen
    exit_ = (run_kind == OUT) & (end_time - run_start >= dwell_out_ms)
    events = np.flatnonzero(entry | exit_)
    kinds = np.where(entry[events], 1, -1)
    previous = np.r_[1 if c["in"] else -1, kinds[:-1]]
    # entered time at each run: the first IN sample since the machine was last beyond the margin (OUT), so
    # flicker in the border band before the confirming run does not delay the entry (mirror of the exit rule);
    # dated from when its position held, but not before the segment began (the first sample after the OUT run)
    out_runs = np.flatnonzero(run_kind == OUT)
    begin = np.r_[c.get("begin") if c.get("begin") is not None else run_start[0], next_start[out_runs]][segment]
    held = np.maximum(run_held, begin)
    first_in = segment_first(segment, np.where(run_kind == IN, held, np.nan))
    if c.get("anchor") is not None:  # an IN run before these samples, with no OUT run since
        first_in = np.where(segment == 0, float(c["anchor"]), first_in)
    # left time candidate at each run: the sample after the most recent IN run that has ended
    left = forward_fill(np.where((run_kind == IN) & has_next, next_start, np.nan),
                        np.nan if c["left"] is None else float(c["left"]))
    visits: list[tuple[int, int]] = []
    entries: list[int] = []
    inside, entered = bool(c["in"]), c["entered"]
    for run, kind_ in zip(events[kinds != previous], kinds[kinds != previous], strict=True):
        if kind_ == 1:
            inside, entered = True, int(first_in[run] if np.isfinite(first_in[run]) else run_start[run])
            entries.append(entered)
        else:
            if entered is not None and np.isfinite(left[run]):
                visits.append((int(entered), int(left[run])))
            inside, entered = False, None
    anchor = None if inside or not np.isfinite(first_in[-1]) else int(first_in[-1])
    if not inside and anchor is None and run_kind[-1] == OUT:
        return visits, entries, None
    state = {"in": inside, "entered": entered, "kind": int(run_kind[-1]), "start": int(run_start[-1]),
             "last": int(run_last[-1]), "left": None if not np.isfinite(left[-1]) else int(left[-1]),
             "anchor": anchor, "sure": bool(seen[-1]), "held": int(run_held[-1]), "begin": int(begin[-1])}
    return visits, entries, state


def segment_cumany(segment: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Per run: any flag so far within its segment (``segment`` non-decreasing: each segment contiguous)."""
    counts = np.cumsum(flags)
    first = np.searchsorted(segment, segment, side="left")
    return counts - counts[first] + flags[first] > 0


def segment_first(segment: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per run: the first finite value of its segment (NaN: none)."""
    index = np.where(np.isfinite(values), np.arange(len(values)), len(values))
    starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
    firsts = np.minimum.reduceat(index, starts) if len(values) else index
    pick = np.repeat(firsts, np.diff(np.r_[starts, len(values)]))
    return np.where(pick < len(values), np.r_[values, np.nan][pick], np.nan)


def forward_fill(values: np.ndarray, before: float) -> np.ndarray:
    """Each NaN takes the last finite value before it (``before`` where there is none)."""
    index = np.maximum.accumulate(np.where(np.isfinite(values), np.arange(len(values)), -1))
    return np.where(index >= 0, values[np.maximum(index, 0)], before)


def speeding_series(t: np.ndarray, over: np.ndarray, speed_kmh: np.ndarray, limit_kmh: np.ndarray,
                    source: np.ndarray, carried: dict[str, Any] | None, min_ms: int,
                    gap_ms: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One machine's speeding episodes: runs over the limit, ended by the first sample not over it or, at a data
    gap longer than ``gap_ms``, by the last sample before the gap (what happened in the gap is unknown, as in
    activity); kept when at least ``min_ms`` long. An episode still running is carried in the returned state."""
    over = np.asarray(over, dtype=bool)
    # index 0 is the carried episode: an over-the-limit run before these samples, last over at carried["last"]
    # (a state from before "last" was kept: no gap is seen at the batch boundary)
    flags = np.r_[bool(carried), over]
    last_carried = (carried or {}).get("last")
    times = np.r_[last_carried if last_carried is not None else (t[0] if len(t) else 0), t].astype(np.int64)
    gap_after = np.r_[np.diff(times) > gap_ms, False]  # a data gap between flag k and flag k + 1
    change = np.flatnonzero((np.diff(flags.astype(np.int8)) != 0) | gap_after[:-1]) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, len(flags)]
    episodes: list[dict[str, Any]] = []
    state = None
    for begin, end in zip(starts, ends, strict=True):
        if not flags[begin]:
            continue
        rows = np.arange(max(begin, 1), end) - 1  # sample indices of this run
        if begin == 0:
            first = dict(carried or {})
        else:
            first = {"start": int(t[rows[0]]), "max": -np.inf, "limit": np.inf, "source": source[rows[0]]}
        peak = max(first["max"], float(speed_kmh[rows].max())) if len(rows) else first["max"]
        lowest = min(first["limit"], float(limit_kmh[rows].min())) if len(rows) else first["limit"]
        if end < len(flags):
            # the first sample not over the limit; at a data gap the last sample over it
            ended = int(times[end - 1] if gap_after[end - 1] else times[end])
            if ended - first["start"] >= min_ms:
                episodes.append({"start": first["start"], "end": ended, "max": peak, "limit": lowest,
                                 "source": first["source"]})
        else:
            state = {"start": first["start"], "max": peak, "limit": lowest, "source": first["source"],
                     "last": int(times[end - 1])}
    return episodes, state
