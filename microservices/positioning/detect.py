"""Pure, vectorised positioning logic: clean GNSS fixes, then decide zone visits, activity and speeding.

Every function works on whole arrays of samples sorted by (machine, time) with times in
integer milliseconds, so results are exact and do not depend on how the samples were
split into batches. Python loops run over machines, zone series or visits, never over samples.

Facts used (DOMAIN.md, Positioning): plain GNSS error is a few metres and jumps of tens of
metres happen; distances and polygons live in a local metric frame; a zone visit needs a
minimum dwell (SitePulse default 5 s) and hysteresis at the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from microservices.series import window_bounds, window_median

IN, BAND, OUT = 1, 0, -1  # a sample inside the polygon, in the border band, or outside the grown polygon
OFF, IDLE, MOVING = 0, 1, 2
STATE_NAMES = np.array(["off", "idle", "moving"], dtype=object)


@dataclass(frozen=True)
class Cleaned:
    """Cleaned positions of samples: smoothed where the fix was accepted, NaN where it was rejected."""

    x: np.ndarray
    y: np.ndarray
    good: np.ndarray  # fix accepted (finite and not a jump)
    jump: np.ndarray  # fix rejected as a jump (implausible against its neighbours)
    speed_ms: np.ndarray  # robust local speed from the fixes, m/s
    vx: np.ndarray | None = None  # robust local velocity from the fixes (m/s east, north): course over ground
    vy: np.ndarray | None = None


def clean_positions(group: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, *, jump_window_s: float,
                    jump_tolerance_m: float, jump_tolerance_s: float, max_speed_kmh: float,
                    smooth_window_s: float) -> Cleaned:
    """Reject jumps (a fix far from its neighbours' motion-compensated median, or a spike at impossible speed)
    and smooth the accepted fixes with a motion-compensated median; positions stay in local metres."""
    n = len(t)
    t = t.astype(np.int64)
    finite = np.isfinite(x) & np.isfinite(y)
    same = np.r_[False, group[1:] == group[:-1]]
    dt_s = np.r_[np.nan, np.diff(t) / 1000.0]
    half_ms = int(round(jump_window_s * 500))
    step_ok = same & finite & np.r_[False, finite[:-1]] & (dt_s > 0) & (dt_s * 1000 <= half_ms)
    with np.errstate(invalid="ignore", divide="ignore"):
        vx_step = np.where(step_ok, np.r_[np.nan, np.diff(x)] / dt_s, np.nan)
        vy_step = np.where(step_ok, np.r_[np.nan, np.diff(y)] / dt_s, np.nan)
    lo, hi = window_bounds(group, t, half_ms)
    # robust local velocity: the median step velocity (a jump spoils only its two boundary steps)
    vx = np.nan_to_num(window_median(lo, hi, lambda i, j: vx_step[j], n))
    vy = np.nan_to_num(window_median(lo, hi, lambda i, j: vy_step[j], n))
    xs = np.where(finite, x, np.nan)
    ys = np.where(finite, y, np.nan)

    def predicted(coord: np.ndarray, v: np.ndarray, mask: np.ndarray) -> Any:
        """Neighbour j's fix moved to sample i's time at i's velocity (NaN where j is not usable)."""
        return lambda i, j: np.where(mask[j], coord[j] + v[i] * (t[i] - t[j]) / 1000.0, np.nan)

    ref_x = window_median(lo, hi, predicted(xs, vx, finite), n)
    ref_y = window_median(lo, hi, predicted(ys, vy, finite), n)
    speed = np.hypot(vx, vy)
    deviation = np.hypot(xs - ref_x, ys - ref_y)
    jump = finite & (deviation > jump_tolerance_m + jump_tolerance_s * speed)
    step_speed = np.hypot(vx_step, vy_step) * 3.6
    too_fast = np.nan_to_num(step_speed, nan=0.0) > max_speed_kmh
    spike = too_fast & np.r_[too_fast[1:] & same[1:], False]  # impossible both into and out of the fix
    jump |= finite & spike
    good = finite & ~jump
    if smooth_window_s > 0:
        slo, shi = window_bounds(group, t, int(round(smooth_window_s * 500)))
        sx = window_median(slo, shi, predicted(xs, vx, good), n)
        sy = window_median(slo, shi, predicted(ys, vy, good), n)
    else:
        sx, sy = xs.copy(), ys.copy()
    # the track velocity is known where steps exist and no rejected fix lies in the window (a long jump bends
    # the median of the steps around it)
    has = np.isfinite(window_median(lo, hi, lambda i, j: vx_step[j], n)) if n else np.zeros(0, bool)
    jumps_before = np.r_[0, np.cumsum(jump)]
    has &= (jumps_before[hi] - jumps_before[lo]) == 0
    return Cleaned(np.where(good, sx, np.nan), np.where(good, sy, np.nan), good, jump, speed,
                   np.where(has, vx, np.nan), np.where(has, vy, np.nan))


def carry_fixes(group: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, good: np.ndarray,
                seed_t: np.ndarray, seed_x: np.ndarray, seed_y: np.ndarray,
                gap_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions where rejected or missing fixes take the last good fix (per group, seeded from before the
    arrays start) for up to ``gap_ms``; returns x, y and whether the position was carried."""
    frame = pd.DataFrame({
        "g": group,
        "t": np.where(good, t, np.nan),
        "x": np.where(good, x, np.nan),
        "y": np.where(good, y, np.nan),
    })
    filled = frame.groupby("g", sort=False)[["t", "x", "y"]].ffill()
    last_t = filled["t"].fillna(pd.Series(seed_t, dtype=float)).to_numpy()
    fx = filled["x"].fillna(pd.Series(seed_x, dtype=float)).to_numpy()
    fy = filled["y"].fillna(pd.Series(seed_y, dtype=float)).to_numpy()
    fresh = np.isfinite(last_t) & (t - np.nan_to_num(last_t, nan=-np.inf) <= gap_ms)
    cx = np.where(good, x, np.where(fresh, fx, np.nan))
    cy = np.where(good, y, np.where(fresh, fy, np.nan))
    return cx, cy, ~good & np.isfinite(cx)


def motion_state(speed_kmh: np.ndarray, engine_on: np.ndarray, moving_kmh: float) -> np.ndarray:
    """off (engine off), moving (speed at or above the threshold) or idle, as OFF/IDLE/MOVING codes."""
    off = np.asarray(engine_on, dtype=float) == 0.0  # NaN (not reported) counts as on
    moving = np.nan_to_num(speed_kmh, nan=0.0) >= moving_kmh
    return np.where(off, OFF, np.where(moving, MOVING, IDLE)).astype(np.int8)


def zone_series(t: np.ndarray, kind: np.ndarray, carried: dict[str, Any] | None, dwell_in_ms: int,
                dwell_out_ms: int) -> tuple[list[tuple[int, int]], list[int], dict[str, Any] | None]:
    """One machine in one zone: confirmed visits (entered, left) and entries, with hysteresis and minimum dwell.

    ``kind`` is IN (inside the polygon), BAND (outside it but inside the polygon grown by the border
    margin, or position unknown) or OUT per sample. An entry is a run of IN samples lasting at least
    ``dwell_in_ms`` (from its first sample to the first sample after it); an exit a run of OUT samples
    lasting ``dwell_out_ms``. Entered = first IN sample of the entry run; left = first sample after the
    last IN sample before the exit run, so the margin delays the decision, not the reported time.
    ``carried`` is the series' state after the previous samples (None: outside, nothing pending).
    """
    c = carried or {"in": False, "entered": None, "kind": OUT, "start": None, "last": None, "left": None}
    change = np.flatnonzero(np.diff(kind)) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, len(kind)] - 1
    run_kind = kind[starts].astype(np.int64)
    run_start = t[starts].astype(np.int64)
    run_last = t[ends].astype(np.int64)
    if c["start"] is not None:
        if run_kind[0] == c["kind"]:
            run_start[0] = c["start"]
        else:
            run_kind = np.r_[c["kind"], run_kind]
            run_start = np.r_[c["start"], run_start]
            run_last = np.r_[c["last"], run_last]
    count = len(run_kind)
    has_next = np.arange(count) < count - 1
    next_start = np.r_[run_start[1:], -1]
    end_time = np.where(has_next, next_start, run_last)
    entry = (run_kind == IN) & (end_time - run_start >= dwell_in_ms)
    exit_ = (run_kind == OUT) & (end_time - run_start >= dwell_out_ms)
    events = np.flatnonzero(entry | exit_)
    kinds = np.where(entry[events], 1, -1)
    previous = np.r_[1 if c["in"] else -1, kinds[:-1]]
    # entered time at each run: the first IN sample since the machine was last beyond the margin (OUT), so
    # flicker in the border band before the confirming run does not delay the entry (mirror of the exit rule)
    segment = np.cumsum(run_kind == OUT)
    first_in = pd.Series(np.where(run_kind == IN, run_start, np.nan)).groupby(segment).transform("first").to_numpy()
    if c.get("anchor") is not None:  # an IN run before these samples, with no OUT run since
        first_in = np.where(segment == 0, float(c["anchor"]), first_in)
    # left time candidate at each run: the sample after the most recent IN run that has ended
    left = pd.Series(np.where((run_kind == IN) & has_next, next_start, np.nan)).ffill()
    left = left.fillna(np.nan if c["left"] is None else float(c["left"])).to_numpy()
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
    if not inside and anchor is None:
        return visits, entries, None
    state = {"in": inside, "entered": entered, "kind": int(run_kind[-1]), "start": int(run_start[-1]),
             "last": int(run_last[-1]), "left": None if not np.isfinite(left[-1]) else int(left[-1]),
             "anchor": anchor}
    return visits, entries, state


def speeding_series(t: np.ndarray, over: np.ndarray, speed_kmh: np.ndarray, limit_kmh: np.ndarray,
                    source: np.ndarray, carried: dict[str, Any] | None,
                    min_ms: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One machine's speeding episodes: runs over the limit, ended by the first sample not over it,
    kept when at least ``min_ms`` long; an episode still running is carried in the returned state."""
    over = np.asarray(over, dtype=bool)
    flags = np.r_[bool(carried), over]  # the carried episode is an over-the-limit run before these samples
    change = np.flatnonzero(np.diff(flags.astype(np.int8))) + 1
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
            ended = int(t[end - 1])  # the first sample not over the limit
            if ended - first["start"] >= min_ms:
                episodes.append({"start": first["start"], "end": ended, "max": peak, "limit": lowest,
                                 "source": first["source"]})
        else:
            state = {"start": first["start"], "max": peak, "limit": lowest, "source": first["source"]}
    return episodes, state
