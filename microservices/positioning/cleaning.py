"""Cleaning GNSS fixes: reject jumps, smooth with a motion-compensated median, carry the last good fix.

Facts used (docs/DOMAIN.md §Positioning): plain GNSS error is a few metres and jumps of tens of metres happen;
distances live in a local metric frame. Every function works on whole arrays of samples sorted by
(machine, time) with times in integer milliseconds, and every window is an exact median, so results do
not depend on how the samples were split into batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from microservices.series import moved_median, window_bounds, window_median


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
    step_vx, step_vy = window_median(lo, hi, vx_step), window_median(lo, hi, vy_step)
    vx, vy = np.nan_to_num(step_vx), np.nan_to_num(step_vy)
    xs = np.where(finite, x, np.nan)
    ys = np.where(finite, y, np.nan)
    ref_x = moved_median(lo, hi, t, xs, vx, finite)
    ref_y = moved_median(lo, hi, t, ys, vy, finite)
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
        sx = moved_median(slo, shi, t, xs, vx, good)
        sy = moved_median(slo, shi, t, ys, vy, good)
    else:
        sx, sy = xs.copy(), ys.copy()
    # the track velocity is known where steps exist and no rejected fix lies in the window (a long jump bends
    # the median of the steps around it)
    has = np.isfinite(step_vx)
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
