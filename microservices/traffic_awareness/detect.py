"""Traffic awareness as one pure step: a batch's samples and the carried state in, encounters, queues, road use,
alerts and the new state out. No database, no I/O: ``service.py`` declares the service and calls ``step``.

How ``step`` stays incremental and deterministic (microservices/sdk.py rules):
- per machine the state keeps a short tail of samples (the causal jump filter's window and the sample
  before the next instant to interpolate); a sample's filtered position depends only on samples before
  it, so it is final as soon as it arrives;
- encounters combine machines, so they are computed on a common time grid only up to the *frontier*:
  the newest instant every machine that is still reporting has passed (a machine silent for
  ``silence_s`` of data time stops holding it back). Everything up to the frontier is final and the
  step says so with ``outputs.finalise``: a sample at or before it, from any machine, makes the runner
  replay, so a late machine cannot be missing from what was emitted (encounters.py);
- queues (queueing.py) and road use depend on one machine's samples only, and are exact integer or
  per-sample values.

Every function works on whole arrays (samples sorted by machine then time, times in integer
milliseconds), so results do not depend on how samples were split into batches. Python loops run over
machines, stop runs or episodes, never over samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from microservices.motion import Motion, motion_from_fixes
from microservices.sdk import Outputs
from microservices.series import stamps
from microservices.traffic_awareness.encounters import encounters
from microservices.traffic_awareness.kalman import kalman_track
from microservices.traffic_awareness.queueing import stays
from microservices.traffic_awareness.roads import assign_segments, snap_to_lanes
from microservices.traffic_awareness.settings import TrafficSettings
from microservices.traffic_awareness.track import Positions, Setup, State, Track, tails_of

STATE_VERSION = 2  # 2: Kalman filters and receiver noise carried, filtered velocity and own speed in the tails


def new_state() -> State:
    """The state before the first step: no tails, nothing decided, no open episode or stay."""
    return {"v": STATE_VERSION, "tails": {}, "done": None, "open": [], "stays": {}, "kf": {}, "noise": {}}


def step(track: Track, state: State, setup: Setup) -> tuple[Outputs, State]:
    """Filter the new fixes with the carried tails, then emit what became final up to the site's frontier."""
    out = Outputs()
    settings = setup.settings
    positions, filters, noise = filtered(track, setup, state.get("kf") or {}, state.get("noise") or {})
    frontier_ms = frontier(positions.group, positions.t, len(positions.ids), settings)
    done, open_ = encounters(out, positions, setup, state.get("done"), state.get("open") or [], frontier_ms)
    state = State(state, done=done, open=open_)
    state["stays"] = stays(out, positions, track.payload, setup, state.get("stays"))
    road_use(out, positions, setup)
    state["tails"] = tails_of(track, positions, done, settings)
    state["kf"] = {m: f for m, f in filters.items() if m in state["tails"]}
    state["noise"] = noise
    out.finalise(stamps(frontier_ms).to_pydatetime())
    return out, state


def filtered(track: Track, setup: Setup, carried: dict[str, Any], noise_state: dict[str, Any]
             ) -> tuple[Positions, dict[str, Any], dict[str, Any]]:
    """Each sample's position and velocity: GNSS jumps filtered out (causally), then each machine's Kalman filter
    (kalman.py) weighing the fixes by its receiver noise and its own speed and heading where trusted, and, where
    the site has lanes, positions matched onto their lane. Returns the positions, the carried filters and the
    carried receiver noise estimates."""
    settings, layout = setup.settings, setup.layout
    group, t, new = track.group, track.t, track.new
    # the machine's own motion: reported speed while it agrees with the displacement over a noise-long baseline,
    # standing, the receiver's noise (estimated online, carried), heading where it agrees with the track
    motion = motion_from_fixes(group, t, track.x, track.y, track.speed, track.heading, settings.motion,
                               names=track.ids, noise_state=noise_state)
    standing = motion.standing
    noise = np.full(len(t), settings.gnss_noise_m) if settings.gnss_noise_m else motion.noise_m
    mvx, mvy, velocity_sigma, trusted = velocity_measurement(track, motion, standing, settings)
    rows = np.flatnonzero(new)
    kx, ky, kvx, kvy, ksd, kvsd, kept = kalman_track(group, t, rows, track.x, track.y, noise, mvx, mvy, velocity_sigma,
                                          trusted, list(track.ids), carried, settings.accel_sigma_ms2,
                                          settings.jump_gate_m, settings.filter_window_s / 2)
    fx, fy = np.full(len(t), np.nan), np.full(len(t), np.nan)
    fvx, fvy, fsd, fvsd = np.zeros(len(t)), np.zeros(len(t)), np.full(len(t), np.nan), np.full(len(t), np.nan)
    fsd[rows], fvsd[rows] = ksd, kvsd
    fx[rows], fy[rows], fvx[rows], fvy[rows] = kx, ky, np.nan_to_num(kvx), np.nan_to_num(kvy)
    # a machine that says it stands is not moving, whatever its fixes do; one with no trusted speed moves as
    # its filtered track does
    speed = np.where(standing, 0.0, np.where(motion.speed_used, motion.speed_kmh, np.hypot(fvx, fvy) * 3.6))
    course = np.where(np.hypot(fvx, fvy) > 0, np.degrees(np.arctan2(fvx, fvy)) % 360.0, np.nan)
    if layout is not None and settings.lane_offset_m is not None and new.any():
        fx, fy = snap(setup, fx, fy, speed, np.where(motion.heading_used, motion.course_deg, course), new)
    positions = Positions(
        ids=track.ids, group=group, t=t, x=np.where(new, np.round(fx, 3), track.fx),
        y=np.where(new, np.round(fy, 3), track.fy), vx=np.where(new, np.round(fvx, 3), track.fvx),
        vy=np.where(new, np.round(fvy, 3), track.fvy), speed=np.where(new, np.round(speed, 3), track.fspeed),
        sigma=np.where(new, np.round(fsd, 3), track.fsd), velocity_sigma=np.where(new, np.round(fvsd, 3), track.fvsd),
        new=new)
    return positions, kept, motion.noise_state


def velocity_measurement(track: Track, motion: Motion, standing: np.ndarray, settings: TrafficSettings
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The velocity a machine's own sensors give (zero where it says it stands; its speed along its heading where
    it reports both), its error per axis (m/s), and whether it is trusted outright (standing, or both checked
    against the track: the Kalman filter checks the others against its own velocity); NaN where none."""
    speed_error = settings.reported_speed_error_kmh / 3.6
    ms = track.speed / 3.6
    heading = np.radians(track.heading)
    reported = np.isfinite(ms) & np.isfinite(heading) & ~standing
    sigma = np.hypot(speed_error, ms * np.radians(settings.reported_heading_error_deg))
    vx = np.where(standing, 0.0, np.where(reported, ms * np.sin(heading), np.nan))
    vy = np.where(standing, 0.0, np.where(reported, ms * np.cos(heading), np.nan))
    trusted = standing | (reported & motion.speed_used & motion.heading_used)
    return vx, vy, np.where(standing, speed_error, np.where(reported, sigma, np.nan)), trusted


def snap(setup: Setup, fx: np.ndarray, fy: np.ndarray, speed: np.ndarray, heading: np.ndarray,
         new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map-match new, moving positions on a haul road onto their lane, except near parking and workshop
    zones, where lanes are not kept."""
    model, settings = setup.layout, setup.settings
    eligible = new & (np.nan_to_num(speed, nan=0.0) >= settings.moving_min_kmh) & np.isfinite(fx)
    if model.unlaned and eligible.any():
        rows = np.flatnonzero(eligible)
        inside = model.index.membership(fx[rows], fy[rows], settings.segment_corridor_m)[:, model.unlaned]
        eligible[rows[inside.any(axis=1)]] = False
    return snap_to_lanes(fx, fy, heading, eligible, model.lines, settings.segment_corridor_m,
                         settings.lane_offset_m, settings.lane_tolerance_m)


def frontier(group: np.ndarray, t: np.ndarray, machines: int, settings: TrafficSettings) -> int:
    """The newest time (ms) up to which every machine's samples are in: results up to it are final.

    Machines silent for ``silence_s`` (data time) no longer hold it back, but it never stops inside a
    silent machine's interpolation reach (``max_gap_s`` after its last sample), so a sample of it that
    arrives later than the frontier cannot change an instant already decided.
    """
    last = np.full(machines, np.iinfo(np.int64).min)
    np.maximum.at(last, group, t)
    newest = last.max()
    silent = newest - last > settings.silence_s * 1000
    frontier = int(last[~silent].min())
    gap = int(settings.max_gap_s * 1000)
    while True:
        blocking = silent & (last < frontier) & (last + gap > frontier)
        if not blocking.any():
            return frontier
        frontier = int(last[blocking].max())


def road_use(out: Outputs, positions: Positions, setup: Setup) -> None:
    """Per segment, minute and machine: samples, summed speed and time on it (sum the rows when reading)."""
    model, settings = setup.layout, setup.settings
    if model is None or not model.segments.ids:
        return
    ids, group, t, fx, fy, speed = (positions.ids, positions.group, positions.t, positions.x, positions.y,
                                    positions.speed)
    rows = np.flatnonzero(positions.new)
    if len(rows) == 0:
        return
    x, y = fx[rows], fy[rows]
    junction = np.zeros((len(rows), len(model.road_zones)), dtype=bool)
    known = np.isfinite(x) & np.isfinite(y)
    if model.road_zones and known.any():
        junction[known] = model.index.membership(x[known], y[known])[:, model.road_zones]
    segment = assign_segments(model.segments, x, y, junction, settings.segment_corridor_m)
    same = (rows > 0) & (group[np.maximum(rows - 1, 0)] == group[rows])
    dwell = np.where(same, t[rows] - t[np.maximum(rows - 1, 0)], 0)
    dwell = np.where(dwell <= settings.max_gap_s * 1000, dwell, 0)
    on = segment >= 0
    if not on.any():
        return
    frame = pd.DataFrame({
        "segment": np.array(model.segments.ids, dtype=object)[segment[on]],
        "minute": (t[rows][on] // 60_000) * 60_000, "machine_id": ids[group[rows][on]],
        "samples": 1, "speed_sum_kmh": np.nan_to_num(speed[rows][on]), "dwell_ms": dwell[on].astype(np.int64)})
    sums = frame.groupby(["segment", "minute", "machine_id"], sort=True).sum().reset_index()
    sums["minute"] = stamps(sums["minute"].to_numpy(np.int64))
    out.write("segment_use", sums)
