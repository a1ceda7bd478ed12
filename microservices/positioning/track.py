"""What one step of positioning works on: every machine's samples, the final ones with what is derived from them,
and what stays fixed during the step (settings, the site's layout and frame).

A step sees each machine's carried raw tail (the cleaning windows' context) followed by its new samples,
sorted by machine then time, with times in integer milliseconds and positions in the site's local metres.
The state the runner stores keeps, per machine, the raw tail as JSON lists and a few scalars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from microservices.positioning.layout import Layout
from microservices.positioning.settings import PositioningSettings
from microservices.series import epoch_ms, json_floats
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import SiteConfig

RAW_FIELDS = ("t", "lon", "lat", "speed", "heading", "engine")


class MachineState(TypedDict, total=False):
    """What a step carries per machine to the next, as JSON (in the state the runner stores with the outputs)."""

    raw: dict[str, list]  # RAW_FIELDS lists: the cleaning windows' context for the samples still to finalise
    last: dict[str, Any]  # the last final sample: t, speed, travel, motion, zone_type, x, y
    good: list[float]  # the last accepted fix: t, x, y
    bucket: int  # track interval of the last final sample (one track row per interval)
    zones: dict[str, dict[str, Any]]  # zone id -> its open series (results.zone_series)
    speeding: dict[str, Any] | None  # the open speeding episode (results.speeding_series)
    standing: list[int] | None  # the standing run open at the last final sample (standing.place)
    ground: dict[str, Any]  # the ground-speed walk's carry (microservices/ground_speed.py)


@dataclass(frozen=True)
class Setup:
    """What stays fixed during a step: the site's settings, its prepared zones and roads, its frame and file."""

    settings: PositioningSettings
    layout: Layout | None  # None without a site file with zones
    frame: LocalFrame
    site: SiteConfig | None  # time zone and shifts


@dataclass(frozen=True)
class Track:
    """The samples of a step, sorted by (machine, time): carried raw tails, then the new samples."""

    ids: np.ndarray  # machine ids, sorted; ``group`` indexes them
    group: np.ndarray
    t: np.ndarray  # ms
    lon: np.ndarray  # the fix as sent
    lat: np.ndarray
    x: np.ndarray  # the fix in local metres
    y: np.ndarray
    speed: np.ndarray  # reported km/h (NaN: not reported)
    heading: np.ndarray  # reported compass degrees
    engine: np.ndarray  # 1.0 on, 0.0 off, NaN not reported


@dataclass(frozen=True)
class Final:
    """The samples that became final in a step, with everything derived from them (sorted by machine, time)."""

    ids: np.ndarray  # machine ids; ``g`` indexes them
    g: np.ndarray
    t: np.ndarray  # ms
    x: np.ndarray  # cleaned position (the last good fix carried through a short gap), local metres
    y: np.ndarray
    known: np.ndarray  # position known
    carried: np.ndarray  # the position is a carried fix
    jump: np.ndarray  # the fix was rejected as a jump
    good: np.ndarray  # the fix was accepted
    raw_lat: np.ndarray  # the fix as sent
    raw_lon: np.ndarray
    heading: np.ndarray  # reported heading
    course: np.ndarray  # fused course (reported heading where it agrees with the track), degrees
    speed: np.ndarray  # km/h right now (speeding): reported while trusted, else the centred track's
    travel: np.ndarray  # km/h over ground (distance, moving time): 0 while standing, NaN where nothing tells
    motion: np.ndarray  # OFF / IDLE / MOVING
    standing: np.ndarray  # the machine stands (by its own speed first): its position is its fixes' mean
    held_from: np.ndarray  # ms: since when the position holds (a standing machine's: since it stopped)
    inside: np.ndarray  # samples x zones: inside the polygon
    sure: np.ndarray  # samples x zones: inside by the entry margin (border_sigmas of the position's uncertainty)
    near: np.ndarray  # samples x zones: within the exit margin outside the polygon, or inside it
    zone_type: np.ndarray  # code into ZONE_TYPES (len: outside every zone, -1: position unknown)
    zone_id: np.ndarray  # the zone the sample is in (None: none)
    standing_runs: dict[int, list[int]]  # per machine code: the standing run open at its last final sample
    ground_carry: dict[int, dict[str, Any]]  # per machine code: its ground-speed walk's carry

    @property
    def first(self) -> np.ndarray:
        """Each machine's first final sample of the step."""
        return np.r_[True, self.g[1:] != self.g[:-1]]

    @property
    def last(self) -> np.ndarray:
        """Each machine's last final sample of the step."""
        return np.r_[self.g[1:] != self.g[:-1], True]

    def previous(self, machines: dict[str, MachineState], values: np.ndarray, key: str,
                 fill: Any = np.nan) -> np.ndarray:
        """Each final sample's predecessor value: the previous row, or the carried last final sample."""
        ids, g = self.ids, self.g
        prev = np.r_[values[:1], values[:-1]].astype(object if values.dtype == object else float)
        for row in np.flatnonzero(self.first):
            last = (machines.get(ids[g[row]]) or {}).get("last")
            value = last.get(key) if last else None
            prev[row] = fill if value is None else value
        return prev


def track_of(telemetry: pd.DataFrame, machines: dict[str, MachineState], frame: LocalFrame) -> Track | None:
    """The carried raw tails of the batch's machines plus the new samples, one per (machine, ts), sorted; None
    when there is no sample."""
    new = pd.DataFrame({
        "machine_id": telemetry["machine_id"].astype(str).to_numpy(),
        "t": epoch_ms(telemetry["ts"]),
        "lon": pd.to_numeric(telemetry.get("lon"), errors="coerce").to_numpy(float),
        "lat": pd.to_numeric(telemetry.get("lat"), errors="coerce").to_numpy(float),
        "speed": pd.to_numeric(telemetry.get("speed_kmh"), errors="coerce").to_numpy(float),
        "heading": pd.to_numeric(telemetry.get("heading_deg"), errors="coerce").to_numpy(float),
        "engine": telemetry["engine_on"].map({True: 1.0, False: 0.0}).astype(float).to_numpy()
        if "engine_on" in telemetry else np.nan,
    })
    tail_ids: list[np.ndarray] = []
    tail_columns: dict[str, list[np.ndarray]] = {f: [] for f in RAW_FIELDS}
    lasts: dict[str, int] = {}
    for machine in new["machine_id"].unique():
        raw = (machines.get(machine) or {}).get("raw")
        if raw and raw["t"]:
            tail_ids.append(np.full(len(raw["t"]), machine, dtype=object))
            for f in RAW_FIELDS:
                tail_columns[f].append(np.array(raw[f], dtype=np.int64 if f == "t" else float))
            lasts[machine] = max(raw["t"])
    if not lasts:
        rows = new
    else:
        limit = new["machine_id"].map(lasts).to_numpy(float)
        new = new[np.isnan(limit) | (new["t"].to_numpy() > limit)]  # replays re-feed only newer rows
        tails = pd.DataFrame({"machine_id": np.concatenate(tail_ids),
                              **{f: np.concatenate(parts) for f, parts in tail_columns.items()}})
        rows = pd.concat([tails, new], ignore_index=True)
    rows = rows.sort_values(["machine_id", "t"], kind="stable").drop_duplicates(["machine_id", "t"])
    rows = rows.reset_index(drop=True)
    if rows.empty:
        return None
    lon, lat = rows["lon"].to_numpy(float), rows["lat"].to_numpy(float)
    x, y = frame.to_xy(lon, lat)
    return Track(ids=np.array(sorted(rows["machine_id"].unique()), dtype=object),
                 group=pd.factorize(rows["machine_id"], sort=True)[0], t=rows["t"].to_numpy(np.int64), lon=lon,
                 lat=lat, x=x, y=y, speed=rows["speed"].to_numpy(float), heading=rows["heading"].to_numpy(float),
                 engine=rows["engine"].to_numpy(float))


def tail_of(track: Track, first: int, stop: int) -> dict[str, list]:
    """Rows [first, stop) of the track as the raw tail the state keeps (JSON lists, NaN as None)."""
    columns = {"t": track.t, "lon": track.lon, "lat": track.lat, "speed": track.speed, "heading": track.heading,
               "engine": track.engine}
    return {f: (columns[f][first:stop].tolist() if f == "t" else json_floats(columns[f][first:stop]))
            for f in RAW_FIELDS}
