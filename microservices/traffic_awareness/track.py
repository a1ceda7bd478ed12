"""What one step of traffic awareness works on: every machine's samples, what the step derives from them, and
what stays fixed during it (settings, the site's layout, the machine registry).

A step sees each machine's carried tail (the samples the causal filter and the interpolation still need)
followed by its new samples, sorted by machine then time, with times in integer milliseconds and positions
in the site's local metres. The state the runner stores keeps the tails as JSON lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from microservices.series import after_tail, epoch_ms, json_floats
from microservices.traffic_awareness.roads import Layout
from microservices.traffic_awareness.settings import TrafficSettings
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import SiteConfig

RAW_FIELDS = ("t", "x", "y", "speed", "heading")  # every tail sample: what the motion windows read
FILTERED_FIELDS = ("fx", "fy", "fvx", "fvy", "fspeed", "fsd", "fvsd")  # only from the interpolation bracket on
TAIL_FIELDS = RAW_FIELDS + FILTERED_FIELDS


class State(TypedDict, total=False):
    """What a step carries to the next, as JSON (the runner stores it with the outputs)."""

    v: int  # detect.STATE_VERSION
    tails: dict[str, dict[str, list]]  # machine -> TAIL_FIELDS lists: the samples the next step still needs
    # (FILTERED_FIELDS only for the newest of them, from the interpolation bracket on)
    done: int | None  # ms: encounters are decided up to this grid instant
    open: list[dict[str, Any]]  # encounter episodes still open (encounters.EPISODE_COLUMNS records)
    stays: dict[str, dict[str, Any]]  # hauler -> its open stay at a load or dump zone (queueing.zone_stays)
    origin: list[float]  # lat, lon of the local frame of a site without a site file
    kf: dict[str, list[float]]  # machine -> its Kalman filter after its newest sample (kalman.py)
    noise: dict[str, Any]  # each machine's receiver noise estimate (motion.Motion.noise_state)


@dataclass(frozen=True)
class Setup:
    """What stays fixed during a step: the site's settings, its prepared layout and frame, the machine kinds."""

    settings: TrafficSettings
    layout: Layout | None  # None without a site file with zones or paths
    frame: LocalFrame
    site: SiteConfig | None  # time zone and shifts
    kinds: dict[str, str]  # machine_id -> kind (hauler, loader, ...), from the machine registry
    rated: dict[str, float] = field(default_factory=dict)  # machine_id -> rated payload (kg), from the registry


@dataclass(frozen=True)
class Track:
    """The samples of a step, sorted by (machine, time): carried tails, then the new samples."""

    ids: np.ndarray  # machine ids, sorted; ``group`` indexes them
    group: np.ndarray
    t: np.ndarray  # ms
    x: np.ndarray  # the fix as measured, local metres (mm-rounded)
    y: np.ndarray
    speed: np.ndarray  # reported km/h (NaN: not reported)
    heading: np.ndarray  # reported compass degrees
    fx: np.ndarray  # the filtered position where an earlier step decided it (tails), else NaN
    fy: np.ndarray
    fvx: np.ndarray  # ... its filtered velocity, m/s
    fvy: np.ndarray
    fspeed: np.ndarray  # ... the speed it moved at (km/h; 0 where it said it stood)
    fsd: np.ndarray  # ... and the filtered position's standard error, m per axis
    fvsd: np.ndarray  # ... and the filtered velocity's, m/s per axis (NaN in tails kept before it was carried)
    new: np.ndarray  # bool: a sample of this batch (not a carried one)
    payload: np.ndarray  # reported payload, kg (NaN: none; carried samples have none)


@dataclass(frozen=True)
class Positions:
    """Where each machine is and how it moves, per sample of the track: what encounters, queues and road use read."""

    ids: np.ndarray
    group: np.ndarray
    t: np.ndarray
    x: np.ndarray  # Kalman-filtered (and lane-matched) position, local metres
    y: np.ndarray
    vx: np.ndarray  # filtered velocity, m/s east
    vy: np.ndarray
    speed: np.ndarray  # the machine's own speed where trusted (0 where it says it stands), else the filter's, km/h
    sigma: np.ndarray  # standard error of the filtered position, m per axis
    velocity_sigma: np.ndarray  # standard error of the filtered velocity, m/s per axis (a turn makes it large)
    new: np.ndarray


def _bracket(own_t: np.ndarray, done: int | None) -> int | None:
    """The time of a machine's last sample at or before the last decided instant (None: every sample)."""
    if done is None:
        return None
    before = np.flatnonzero(own_t <= done)
    return int(own_t[before[-1]]) if len(before) else None


def track_of(telemetry: pd.DataFrame, tails: dict[str, Any], frame: LocalFrame) -> Track | None:
    """Every machine's carried tail plus the new samples (newer than the tail), one per (machine, ts), sorted;
    None when there is no sample."""
    fresh = telemetry.dropna(subset=["ts"])
    x, y = frame.to_xy(fresh["lon"].to_numpy(float), fresh["lat"].to_numpy(float))
    new = pd.DataFrame({
        "machine_id": fresh["machine_id"].to_numpy(object), "t": epoch_ms(fresh["ts"]),
        "x": np.round(x, 3), "y": np.round(y, 3),
        "speed": fresh["speed_kmh"].to_numpy(float) if "speed_kmh" in fresh else np.nan,
        "heading": fresh["heading_deg"].to_numpy(float) if "heading_deg" in fresh else np.nan,
        "payload": pd.to_numeric(fresh["payload_kg"], errors="coerce").to_numpy(float) if "payload_kg" in fresh
        else np.nan,
        **{f: np.nan for f in FILTERED_FIELDS}, "new": True})
    names: list[str] = []
    columns: dict[str, list] = {f: [] for f in TAIL_FIELDS}
    for machine, tail in tails.items():
        n = len(tail["t"])
        names.extend([machine] * n)
        for f in RAW_FIELDS:
            columns[f].extend(tail[f])
        for f in FILTERED_FIELDS:
            kept = tail.get(f, [])  # a field added to the tails later is missing from older states
            columns[f].extend([None] * (n - len(kept)))
            columns[f].extend(kept)
    carried = None
    if names:
        carried = pd.DataFrame({"machine_id": np.array(names, dtype=object),
                                **{f: np.array(columns[f], dtype=float) for f in TAIL_FIELDS}, "new": False})
        carried["t"] = np.array(columns["t"], dtype=np.int64)
    rows = after_tail(carried, new)
    if rows.empty:
        return None
    ids = np.array(sorted(rows["machine_id"].unique()), dtype=object)
    return Track(ids=ids, group=np.searchsorted(ids, rows["machine_id"].to_numpy(object)),
                 t=rows["t"].to_numpy(np.int64), x=rows["x"].to_numpy(float), y=rows["y"].to_numpy(float),
                 speed=rows["speed"].to_numpy(float), heading=rows["heading"].to_numpy(float),
                 fx=rows["fx"].to_numpy(float), fy=rows["fy"].to_numpy(float), fvx=rows["fvx"].to_numpy(float),
                 fvy=rows["fvy"].to_numpy(float), fspeed=rows["fspeed"].to_numpy(float),
                 fsd=rows["fsd"].to_numpy(float), fvsd=rows["fvsd"].to_numpy(float),
                 new=rows["new"].to_numpy(bool), payload=rows["payload"].to_numpy(float))


def tails_of(track: Track, positions: Positions, done: int | None,
             settings: TrafficSettings) -> dict[str, dict[str, list]]:
    """Per machine: the samples the next step still needs (filter window, interpolation bracket), as JSON lists."""
    tails = {}
    t, group = track.t, track.group
    columns = {"t": t, "x": track.x, "y": track.y, "speed": track.speed, "heading": track.heading,
               "fx": positions.x, "fy": positions.y, "fvx": positions.vx, "fvy": positions.vy,
               "fspeed": positions.speed, "fsd": positions.sigma, "fvsd": positions.velocity_sigma}
    lookback = settings.lookback_ms
    starts = np.searchsorted(group, np.arange(len(track.ids)), side="left")
    ends = np.searchsorted(group, np.arange(len(track.ids)), side="right")
    for code, machine in enumerate(track.ids):
        a, b = starts[code], ends[code]
        own_t = t[a:b]
        cut = own_t[-1] - lookback
        if done is not None:
            before = np.flatnonzero(own_t <= done)
            if len(before):
                cut = min(cut, own_t[before[-1]])
        keep = np.arange(a, b)[own_t >= cut]
        tail = {f: (columns[f][keep].astype(np.int64).tolist() if f == "t" else json_floats(columns[f][keep]))
                for f in RAW_FIELDS}
        # filtered values are read only by the interpolation, from the last instant decided on
        bracket = keep[own_t[keep - a] >= bracket_t] if (bracket_t := _bracket(own_t, done)) is not None else keep
        tail.update({f: json_floats(columns[f][bracket]) for f in FILTERED_FIELDS})
        tails[machine] = tail
    return tails
