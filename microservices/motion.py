"""Motion from the track: course and speed over ground from consecutive positions, fused with what the
machine reports.

A mixed fleet reports heading and speed badly: a dead compass or a tracker without one sends 0, some
send nothing, some are mounted backwards, a speed signal freezes. Positions are the one thing every
tracker sends, so every service that needs motion (dead reckoning, time to collision, the GNSS jump gate,
lane and road matching, speeding, activity) takes it from here: the reported heading is used only where it
agrees with the track within a tolerance, else the track wins. Speed, ``standing`` and the receiver's noise
(``noise_m``) come from ``ground_speed.py``'s walk: the machine's own speed first, judged against its fixes over a
baseline long enough for their noise (a standalone receiver's metres of jitter never drive a standing machine
off). Shared by the built-in services through the SDK package (no service imports another for it). Services that
need only speed and standing call ``ground_speed.py`` directly (with its carry).

All functions are vectorised over samples sorted by (machine, time) with integer-millisecond times;
the track velocity is causal (only earlier fixes), so an alert never waits for a future sample and the
result does not depend on how samples were split into batches when the caller carries the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from microservices.ground_speed import GroundMotion, batch_motion
from microservices.motion_settings import MotionSettings
from microservices.receiver import PRIOR_NOISE_M
from microservices.series import KEY_BITS, KEY_SPAN, window_median

__all__ = ["Motion", "MotionSettings", "angle_diff", "fuse", "motion_from_fixes", "track_velocity"]

@dataclass(frozen=True)
class Motion:
    """Fused motion per sample: what the services use, and which source each part came from."""

    vx: np.ndarray  # m/s east
    vy: np.ndarray  # m/s north
    speed_kmh: np.ndarray
    course_deg: np.ndarray  # NaN when standing and no heading is known
    track_vx: np.ndarray
    track_vy: np.ndarray
    track_kmh: np.ndarray  # NaN where the track gives no velocity (first fix, gap, no position)
    heading_used: np.ndarray  # bool: the reported heading was used
    heading_checked: np.ndarray  # bool: the track was fast enough to check the reported heading
    heading_agrees: np.ndarray  # bool: checked and within tolerance
    speed_used: np.ndarray  # bool: the reported speed was used
    speed_checked: np.ndarray
    speed_agrees: np.ndarray
    standing: np.ndarray  # bool: by its own trusted speed, else its displacement within the noise floor
    noise_m: np.ndarray  # the receiver's position noise (m per axis), estimated online (receiver.py)
    noise_state: dict[str, Any] = field(default_factory=dict)  # to pass to the next motion_from_fixes


def angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference of two bearings in degrees, 0-180 (NaN where either is unknown)."""
    return np.abs((np.asarray(a, float) - np.asarray(b, float) + 180.0) % 360.0 - 180.0)


def _causal_median(key: np.ndarray, values: np.ndarray, window_ms: int, at: np.ndarray | None = None
                   ) -> np.ndarray:
    """Median of ``values`` over each sample's own earlier ``window_ms`` (same group), NaN ignored; with ``at``
    (a mask) only at those samples (NaN elsewhere)."""
    lo = np.searchsorted(key, key - window_ms, side="left")
    return window_median(lo, np.arange(1, len(key) + 1), values, at)


def track_velocity(group: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray,
                   settings: MotionSettings) -> tuple[np.ndarray, np.ndarray]:
    """Velocity over ground (m/s east, north) from the fixes before each sample: the component-wise median of
    the step velocities in the window. NaN where no step is usable (first fix, gaps, no position)."""
    t = np.asarray(t, np.int64)
    if len(t) < 2:
        return np.full(len(t), np.nan), np.full(len(t), np.nan)
    sx, sy = _steps(group, t, x, y, settings)
    vx, vy = _velocity(np.asarray(group, np.int64) * KEY_SPAN + t, sx, sy, settings)
    return vx, vy


def _steps(group: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, settings: MotionSettings
           ) -> tuple[np.ndarray, np.ndarray]:
    """Each fix's step velocity from the previous fix of its machine (m/s); NaN for no step or a GNSS spike."""
    n = len(t)
    finite = np.isfinite(x) & np.isfinite(y)
    # a step is between a fix and the previous finite fix of the same machine, at most max_step_s before
    index = np.where(finite, np.arange(n), -1)
    prev = np.r_[-1, np.maximum.accumulate(index)[:-1]]
    ok = finite & (prev >= 0)
    p = np.clip(prev, 0, n - 1)
    ok &= (group[p] == group) & ((t - t[p]) > 0) & ((t - t[p]) <= settings.max_step_s * 1000)
    dt = np.where(ok, (t - t[p]) / 1000.0, np.nan)
    with np.errstate(invalid="ignore"):
        sx = np.where(ok, (x - x[p]) / dt, np.nan)
        sy = np.where(ok, (y - y[p]) / dt, np.nan)
    fast = np.hypot(sx, sy) * 3.6 > settings.max_speed_kmh
    sx[fast], sy[fast] = np.nan, np.nan
    return sx, sy


def _velocity(key: np.ndarray, sx: np.ndarray, sy: np.ndarray, settings: MotionSettings
              ) -> tuple[np.ndarray, np.ndarray]:
    """Track velocity from the step velocities (rows sorted by ``key``)."""
    step = np.hypot(sx, sy)
    window = int(round(settings.track_window_s * 1000))
    # a step into or out of a GNSS jump is far faster or slower than the steps around it: left out, so the
    # short window that follows turns closely is not thrown by jumps
    typical = _causal_median(key, step, window)
    odd = np.abs(step - typical) * 3.6 > settings.step_tolerance_kmh + settings.step_tolerance_share * typical * 3.6
    kx, ky = np.where(odd, np.nan, sx), np.where(odd, np.nan, sy)
    short = int(round(settings.predict_window_s * 1000))
    vx, vy = _causal_median(key, kx, short), _causal_median(key, ky, short)
    fallback = ~np.isfinite(vx)
    if fallback.any():
        wx, wy = _causal_median(key, sx, window, fallback), _causal_median(key, sy, window, fallback)
        vx, vy = np.where(fallback, wx, vx), np.where(fallback, wy, vy)
    return vx, vy


def _trusted(key: np.ndarray, checked: np.ndarray, agrees: np.ndarray, settings: MotionSettings,
             share_needed: float) -> np.ndarray:
    """Per sample: did most of the checks in the trust window before it (same machine) agree?"""
    n = len(key)
    if n == 0:
        return np.zeros(0, bool)
    lo = np.searchsorted(key, key - int(round(settings.trust_window_s * 1000)), side="left")
    c_checked = np.r_[0, np.cumsum(checked)]
    c_agree = np.r_[0, np.cumsum(agrees)]
    hi = np.arange(1, n + 1)
    count = c_checked[hi] - c_checked[lo]
    share = (c_agree[hi] - c_agree[lo]) / np.maximum(count, 1)
    enough = count >= settings.trust_min_checks
    # too few checks yet (just started moving): a value that agrees right now is used
    return (enough & (share >= share_needed)) | (~enough & agrees)


def _frozen(key: np.ndarray, values: np.ndarray, checked: np.ndarray, settings: MotionSettings) -> np.ndarray:
    """Per sample: while the track moved, the reported value repeated exactly from the sample before in nearly
    all of the trust window's checks (a live compass on a moving machine changes by tenths at least)."""
    n = len(key)
    if n < 2:
        return np.zeros(n, bool)
    same_group = np.r_[False, (key[1:] >> KEY_BITS) == (key[:-1] >> KEY_BITS)]
    repeated = checked & same_group & np.r_[False, values[1:] == values[:-1]]
    lo = np.searchsorted(key, key - int(round(settings.trust_window_s * 1000)), side="left")
    c_rep, c_checked = np.r_[0, np.cumsum(repeated)], np.r_[0, np.cumsum(checked)]
    hi = np.arange(1, n + 1)
    count = c_checked[hi] - c_checked[lo]
    return (count >= settings.trust_min_checks) & (c_rep[hi] - c_rep[lo] >= settings.trust_share * count)


def fuse(track_vx: np.ndarray, track_vy: np.ndarray, speed_kmh: np.ndarray, heading_deg: np.ndarray,
         settings: MotionSettings, key: np.ndarray | None = None, ground: GroundMotion | None = None) -> Motion:
    """The motion to use per sample: reported speed and heading where they agree with the track, else the
    track's; where the track has nothing (first fix, gap), what was reported. With ``key`` (group * span + t,
    sorted) agreement is judged over the trust window, so a healthy compass keeps being used through turns
    where the causal track lags. With ``ground`` (``ground_speed``'s walk over the same rows) the speed, standing
    and noise are the walk's: the reported speed judged against the displacement over the noise baseline; without
    it (a caller with a lag-free track of its own) the speed is judged against ``track_*`` sample by sample and
    standing is a fused speed at or under ``standing_kmh``."""
    speed_r = np.asarray(speed_kmh, float)
    heading_r = np.asarray(heading_deg, float)
    tvx, tvy = np.asarray(track_vx, float), np.asarray(track_vy, float)
    track_kmh = np.hypot(tvx, tvy) * 3.6
    has_track = np.isfinite(track_kmh)
    course_t = np.degrees(np.arctan2(tvx, tvy)) % 360.0
    tol = settings.speed_tolerance_kmh + settings.speed_tolerance_share * np.nan_to_num(track_kmh)
    speed_checked = has_track & np.isfinite(speed_r)
    speed_agrees = speed_checked & (np.abs(speed_r - track_kmh) <= tol)
    if key is not None:
        speed_agrees_now = speed_agrees
        speed_agrees = speed_checked & _trusted(key, speed_checked, speed_agrees_now, settings,
                                                 settings.speed_trust_share)
    speed_used = np.isfinite(speed_r) & (speed_agrees | ~has_track)
    speed = np.where(speed_used, speed_r, np.where(has_track, track_kmh, np.nan))
    if ground is not None:
        speed, speed_used = ground.speed_kmh, ground.speed_used
        speed_checked, speed_agrees = ground.speed_checked, ground.speed_agrees
        standing, noise_m = ground.standing, ground.noise_m
    else:
        standing = np.nan_to_num(speed, nan=np.inf) <= settings.standing_kmh
        noise_m = np.full(len(speed), PRIOR_NOISE_M)
    # the course over ground is checked and used only while the machine moves at speed (under metres of jitter a
    # standing machine's short-window track wanders several km/h)
    fast = has_track & (track_kmh >= settings.min_track_kmh) & ~standing \
        & (np.nan_to_num(speed) >= settings.min_track_kmh)
    heading_checked = fast & np.isfinite(heading_r)
    heading_agrees = heading_checked & (angle_diff(heading_r, course_t) <= settings.heading_tolerance_deg)
    trusted = np.ones(len(heading_r), bool)
    if key is not None:
        trusted = _trusted(key, heading_checked, heading_agrees, settings, settings.trust_share)
        # a frozen reading (unchanged through the trust window's checks while moving) is not used while the track
        # can be checked, even where it agrees: a value stuck within the tolerance of the road's direction (14 deg
        # off on a straight road) would steer dead reckoning, the jump gate and predictions off by metres
        trusted &= ~(_frozen(key, heading_r, heading_checked, settings) & heading_checked)
    # judged over the window, a trusted heading is used through turns (where the causal track lags) and when
    # slow; without evidence the track's motion is used (none at all where the track has no step yet)
    heading_used = np.isfinite(heading_r) & trusted & (heading_agrees | ~fast | (key is not None))
    if key is None:  # judged sample by sample: a heading that cannot be checked is kept
        heading_used |= np.isfinite(heading_r) & ~fast
    course = np.where(heading_used, heading_r, np.where(fast, course_t, np.nan))
    ms = np.nan_to_num(speed, nan=0.0) / 3.6
    rad = np.radians(course)
    # no usable bearing (slow, no heading): the track's own velocity, which is small by then
    vx = np.where(np.isfinite(course), ms * np.sin(rad), np.where(has_track, tvx, 0.0))
    vy = np.where(np.isfinite(course), ms * np.cos(rad), np.where(has_track, tvy, 0.0))
    vx = np.where((ms > 0) & ~standing, vx, 0.0)
    vy = np.where((ms > 0) & ~standing, vy, 0.0)
    return Motion(np.nan_to_num(vx), np.nan_to_num(vy), speed, course, tvx, tvy, track_kmh, heading_used,
                  heading_checked, heading_agrees, speed_used, speed_checked, speed_agrees, standing, noise_m)


def motion_from_fixes(group: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, speed_kmh: np.ndarray,
                      heading_deg: np.ndarray, settings: MotionSettings | None = None,
                      filtered: bool = False, names: np.ndarray | None = None,
                      noise_state: dict[str, Any] | None = None) -> Motion:
    """Track velocity from the fixes, then the fusion: the one call most services need. Rows sorted by (group,
    time), x, y in metres. Speed, ``standing`` and ``noise_m`` come from ``ground_speed``'s walk: the machine's
    own speed while it agrees with the displacement over the noise baseline, else the displacement's verdict.
    ``noise_state``: the previous call's ``Motion.noise_state`` (the receiver's noise estimate per machine,
    ``names[group]`` or the group index as key; samples it has seen are not counted again, so a caller may feed a
    tail of earlier samples with each batch). ``filtered``: the fixes are already jump-filtered (the same
    estimate; kept for callers to say what they pass)."""
    settings = settings or MotionSettings()
    tvx, tvy = track_velocity(group, t, x, y, settings)
    key = np.asarray(group, np.int64) * KEY_SPAN + np.asarray(t, np.int64)
    ground, state = batch_motion(group, t, x, y, speed_kmh, settings, names, noise_state)
    motion = fuse(tvx, tvy, speed_kmh, heading_deg, settings, key, ground)
    return Motion(**{**motion.__dict__, "noise_state": state})
