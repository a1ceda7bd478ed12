"""Positioning as one pure step: a batch's fixes and the carried state in; the cleaned track, activity, zone visits,
speeding, alerts and the new state out. No database, no I/O: ``service.py`` declares the service and calls ``step``.

How ``step`` stays incremental and deterministic (microservices/sdk.py rules): per machine the state keeps
a short tail of raw samples (enough context for the cleaning windows) and a few scalars (last final
sample, last good fix, zone series, open speeding episode). A sample's cleaned position depends only on
samples within +-``lookahead_s`` of it, so a sample becomes *final* once data ``lookahead_s`` newer than it
has arrived; everything written is derived from final samples only (results.py), and time and distance
are summed in integer milliseconds and millimetres, so any split of the same telemetry into batches gives
the same totals. Cleaning is in cleaning.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from microservices.ground_speed import GroundMotion, motion_over_ground
from microservices.motion import fuse
from microservices.positioning import results
from microservices.positioning.cleaning import Cleaned, carry_fixes, clean_positions
from microservices.positioning.layout import ZONE_TYPES
from microservices.positioning.settings import PositioningSettings
from microservices.positioning.standing import carried_runs, place
from microservices.positioning.track import Final, MachineState, Setup, Track, tail_of
from microservices.sdk import Outputs

STATE_VERSION = 1


def new_state() -> dict[str, Any]:
    """The state before the first step: nothing carried for any machine."""
    return {"v": STATE_VERSION, "machines": {}}


def step(track: Track, machines: dict[str, MachineState], setup: Setup
         ) -> tuple[Outputs, dict[str, MachineState]]:
    """Clean the fixes with the carried tails, emit everything that became final; returns the outputs and each
    machine's new carried state."""
    out = Outputs()
    settings = setup.settings
    group, t, ids = track.group, track.t, track.ids
    cleaned = clean_positions(
        group, t, track.x, track.y, jump_window_s=settings.jump_window_s, jump_tolerance_m=settings.jump_tolerance_m,
        jump_tolerance_s=settings.jump_tolerance_s, max_speed_kmh=settings.max_speed_kmh,
        smooth_window_s=settings.smooth_window_s)
    lookahead_ms = int(round(settings.lookahead_s * 1000))
    newest = pd.Series(t).groupby(group).transform("max").to_numpy()
    final_before = np.array([final_until(machines.get(m)) for m in ids], dtype=float)[group]
    final_now = (t <= newest - lookahead_ms) & (t > final_before)
    final = finalise(track, cleaned, final_now, machines, setup)
    emitted = write(out, final, machines, setup) if final is not None else {}
    # rows are sorted by machine and time, so each machine is one slice: [starts[code], ends[code])
    starts = np.searchsorted(group, np.arange(len(ids)), side="left")
    ends = np.searchsorted(group, np.arange(len(ids)), side="right")
    machines = dict(machines)
    for code, machine in enumerate(ids):
        a, b = int(starts[code]), int(ends[code])
        cutoff = int(newest[a]) - 2 * lookahead_ms  # cleaning context for the samples still to finalise
        first = max(a, a + int(np.searchsorted(t[a:b], cutoff, side="left")) - 1)  # and the sample before it
        machines[machine] = {**machines.get(machine, {}), **emitted.get(machine, {}), "raw": tail_of(track, first, b)}
    return out, machines


def final_until(machine_state: MachineState | None) -> float:
    """The time (ms) of a machine's last final sample (-inf: none yet)."""
    if not machine_state or machine_state.get("last") is None:
        return -np.inf
    return float(machine_state["last"]["t"])


def own_motion(track: Track, sel: np.ndarray, machines: dict[str, MachineState], settings: PositioningSettings
               ) -> tuple[GroundMotion, dict[int, dict[str, Any]]]:
    """Speed, standing and receiver noise of the final samples (microservices/ground_speed.py), each machine's
    walk carried in its state: each sample is walked once, in time order, whatever the batches."""
    g = track.group[sel]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, np.int64)
    parts, carries = [], {}
    for a, b in zip(starts, np.r_[starts[1:], len(g)], strict=True):
        code = int(g[a])
        machine = track.ids[code]
        rows = sel[a:b]
        motion, carries[code] = motion_over_ground(
            np.full(b - a, machine, dtype=object), track.t[rows], track.x[rows], track.y[rows], track.speed[rows],
            (machines.get(machine) or {}).get("ground") or {}, settings.motion)
        parts.append(motion)
    fields = GroundMotion.__dataclass_fields__
    if not parts:
        return GroundMotion(*(np.zeros(0) for _ in fields)), carries
    return GroundMotion(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields)), carries


def finalise(track: Track, cleaned: Cleaned, final_now: np.ndarray, machines: dict[str, MachineState],
             setup: Setup) -> Final | None:
    """The samples that became final, with their carried positions, fused motion, state and zones (None: none)."""
    sel = np.flatnonzero(final_now)
    if len(sel) == 0:
        return None
    settings, model = setup.settings, setup.layout
    g = track.group[sel]
    ts = track.t[sel]
    seeds = [((machines.get(m) or {}).get("good") or [np.nan, np.nan, np.nan]) for m in track.ids]
    seed = np.array(seeds, dtype=float)[g]
    x, y, carried = carry_fixes(g, ts, cleaned.x[sel], cleaned.y[sel], cleaned.good[sel],
                                seed[:, 0], seed[:, 1], seed[:, 2], int(round(settings.gap_carry_s * 1000)))
    # course (road matching): the reported heading where it agrees with the (centred, lag-free) track
    fused = fuse(cleaned.vx[sel], cleaned.vy[sel], track.speed[sel], track.heading[sel], settings.motion)
    # speed and standing: the machine's own speed while it agrees with its fixes over a noise-long baseline, else
    # the fixes' over that baseline (a standalone receiver's jitter neither moves a standing machine nor adds
    # distance); the centred track's where neither tells yet
    ground, ground_carry = own_motion(track, sel, machines, settings)
    standing = ground.standing
    # the speed: the reported one while the walk trusts it; else only what both the centred track (lag-free but
    # jittery on a noisy receiver) and the speed over the baseline (smooth but lagging stops, starts and braking
    # into a limited zone) support: the lower of the two; zero while standing
    reported = track.speed[sel]
    speed = np.where(ground.speed_used & np.isfinite(reported), reported,
                     np.fmin(fused.speed_kmh, np.where(standing, 0.0, ground.speed_kmh)))
    travel = np.where(standing, 0.0, speed)
    motion = results.motion_state(travel, track.engine[sel], settings.moving_kmh)
    gap_ms = int(round(settings.gap_carry_s * 1000))
    placed = place(g, ts, x, y, cleaned.good[sel], standing, ground.noise_m, carried_runs(track.ids, machines),
                   settings.gnss_decorrelation_s, gap_ms)
    x, y = placed.x, placed.y
    known = np.isfinite(x) & np.isfinite(y)
    n_zones = len(model.index.zones) if model else 0
    inside = np.zeros((len(sel), n_zones), dtype=bool)
    depth = np.full((len(sel), n_zones), -np.inf)
    sigma = np.where(known, placed.sigma_m, 0.0)
    margin_in = settings.border_sigmas * sigma
    margin_out = np.maximum(settings.border_margin_m, margin_in)
    if model and known.any():
        inside[known] = model.index.membership(x[known], y[known])
        depth[known] = model.border_depth(x[known], y[known], inside[known], float(margin_out[known].max()))
    zone_index = np.where(inside.any(axis=1), inside.argmax(axis=1), n_zones) if n_zones else np.zeros(
        len(sel), dtype=np.int64)
    zone_type = model.zone_type_codes[zone_index] if model else np.full(len(sel), len(ZONE_TYPES))
    zone_type = np.where(known, zone_type, -1)  # -1: position unknown
    zone_id = model.zone_ids[zone_index] if model else np.full(len(sel), None, dtype=object)
    return Final(ids=track.ids, g=g, t=ts, x=x, y=y, known=known, carried=carried, jump=cleaned.jump[sel],
                 good=cleaned.good[sel], raw_lat=track.lat[sel], raw_lon=track.lon[sel],
                 heading=track.heading[sel], course=fused.course_deg, speed=speed, travel=travel, motion=motion,
                 standing=standing, held_from=placed.held_from, inside=inside,
                 sure=depth >= margin_in[:, None], near=depth >= -margin_out[:, None],
                 zone_type=zone_type, zone_id=zone_id, standing_runs=placed.carry, ground_carry=ground_carry)


def write(out: Outputs, final: Final, machines: dict[str, MachineState], setup: Setup
          ) -> dict[str, MachineState]:
    """Write everything about the final samples; return the per-machine state updates."""
    updates: dict[str, MachineState] = {}
    results.write_track(out, final, machines, setup)
    results.write_activity(out, final, machines, setup)
    if setup.layout:
        results.write_zones(out, final, machines, setup, updates)
        results.write_speeding(out, final, machines, setup, updates)
    ids, g, ts, x, y, speed = final.ids, final.g, final.t, final.x, final.y, final.speed
    for row in np.flatnonzero(final.last):
        machine = ids[g[row]]
        update = updates.setdefault(machine, {})
        update["last"] = {"t": int(ts[row]), "speed": float(speed[row]) if np.isfinite(speed[row]) else None,
                          "travel": float(final.travel[row]) if np.isfinite(final.travel[row]) else None,
                          "motion": int(final.motion[row]), "zone_type": int(final.zone_type[row]),
                          "x": float(x[row]) if final.known[row] else None,
                          "y": float(y[row]) if final.known[row] else None}
        own = np.flatnonzero((g == g[row]) & final.good)
        if len(own):
            k = own[-1]
            update["good"] = [int(ts[k]), float(x[k]), float(y[k])]
        update["bucket"] = int(ts[row] // int(setup.settings.track_interval_s * 1000))
        update["standing"] = final.standing_runs.get(int(g[row]))
        update["ground"] = final.ground_carry.get(int(g[row]))
    return updates
