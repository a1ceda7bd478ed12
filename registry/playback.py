"""A shift replayed: every machine's stored track and the events of the period, in one compact answer.

The browser fetches a period once and animates it locally, so the answer is built to be small: per machine, the
positions positioning stored (one per ``step`` seconds) as columns of integers (seconds from the start, lat and lon
in microdegrees, about 0.1 m), each column delta-encoded (small numbers, short JSON), and the interior of every run
where the machine stood still dropped (the browser interpolates between the kept samples, which is exact there).
Events come from their owners' reading functions: zone entries (positioning), cycles (weight loading), encounters
(traffic awareness) and alarms (the registry's own).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from microservices.positioning.results import read_track, read_zone_entries
from microservices.traffic_awareness.routes import read_encounters
from microservices.weight_loading.routes import load_cycles
from registry.alerts import alerts_between
from sitepulse.errors import InvalidInput

Read = Callable[[str, Mapping[str, Any]], pd.DataFrame]
MAX_PERIOD = timedelta(hours=24)
MIN_STEP_S = 5.0  # positioning's default track interval: finer would only repeat samples
MAX_POINTS_PER_MACHINE = 9000  # a 12-hour shift at 5 s is 8640: longer periods are thinned to this
MICRO = 1_000_000
STATE_CODES = {"moving": "m", "idle": "i", "off": "o"}
MAX_EVENTS = 20_000  # a busy 12-hour shift of 50 machines has about 17,000


def playback_step(start: datetime, end: datetime) -> float:
    """Seconds between the positions sent: the track's own interval, coarser only for long periods."""
    if end <= start:
        raise InvalidInput("'to' must be after 'from'")
    if end - start > MAX_PERIOD:
        raise InvalidInput(f"a playback covers at most {MAX_PERIOD.total_seconds() / 3600:.0f} hours; "
                           "pick a shorter period")
    return max(MIN_STEP_S, math.ceil((end - start).total_seconds() / MAX_POINTS_PER_MACHINE))


def encode_tracks(track: pd.DataFrame, t0_ms: int) -> list[dict[str, Any]]:
    """Per machine, delta-encoded integer columns ``t`` (s from t0), ``lat``/``lon`` (microdegrees) and a state
    string (one letter per sample: m moving, i idle, o off, u unknown), with standing-still interiors dropped."""
    if track.empty:
        return []
    track = track[np.isfinite(track["lat"].to_numpy(float)) & np.isfinite(track["lon"].to_numpy(float))]
    if track.empty:
        return []
    ids = track["machine_id"].to_numpy(object)
    t = np.rint((track["t_ms"].to_numpy(np.int64) - t0_ms) / 1000).astype(np.int64)
    lat = np.rint(track["lat"].to_numpy(float) * MICRO).astype(np.int64)
    lon = np.rint(track["lon"].to_numpy(float) * MICRO).astype(np.int64)
    state = np.array([STATE_CODES.get(s, "u") for s in track["state"].to_numpy(object)], dtype="<U1")
    first = np.r_[True, ids[1:] != ids[:-1]]
    last = np.r_[ids[1:] != ids[:-1], True]
    same_as_prev = ~first & np.r_[False, (lat[1:] == lat[:-1]) & (lon[1:] == lon[:-1]) & (state[1:] == state[:-1])]
    same_as_next = np.r_[same_as_prev[1:], False] & ~last
    keep = ~(same_as_prev & same_as_next)
    out = []
    starts = np.flatnonzero(first)
    for begin, end in zip(starts, np.r_[starts[1:], len(ids)], strict=True):
        rows = begin + np.flatnonzero(keep[begin:end])
        out.append({"id": str(ids[begin]),
                    "t": np.diff(t[rows], prepend=0).tolist(),
                    "lat": np.diff(lat[rows], prepend=0).tolist(),
                    "lon": np.diff(lon[rows], prepend=0).tolist(),
                    "s": "".join(state[rows].tolist())})
    return out


def _seconds(at: Any, t0: datetime) -> int:
    return int(round((pd.Timestamp(at).to_pydatetime() - t0).total_seconds()))


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _event(kind: str, at: Any, t0: datetime, text: str, machines: list[str], *, zone: str | None = None,
           lat: Any = None, lon: Any = None, level: str = "info") -> dict[str, Any]:
    stamp = pd.Timestamp(at)
    return {"kind": kind, "t": _seconds(stamp, t0), "at": stamp.isoformat(), "text": text, "machines": machines,
            "zone": zone, "lat": _number(lat), "lon": _number(lon), "level": level}


def zone_entry_events(read: Read, site_id: str, start: datetime, end: datetime,
                      names: Mapping[str, str]) -> list[dict[str, Any]]:
    entries = read_zone_entries(read, site_id, start, end)
    return [_event("zone", r.entered_at, start, f"{r.machine_id} entered {names.get(r.zone, r.zone)} ({r.zone_type})",
                   [r.machine_id], zone=r.zone, level="critical" if r.zone_type == "restricted" else "info")
            for r in entries.itertuples()]


def cycle_events(read: Read, site_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """A loaded and a dumped event per cycle (the cycles whose dump finished in the period)."""
    events = []
    for c in load_cycles(read, site_id, start, end).itertuples():
        tonnes = f"{c.payload_kg / 1000:.1f} t" if pd.notna(c.payload_kg) else "payload unknown"
        if pd.notna(c.loaded_at) and c.loaded_at >= start:
            events.append(_event("cycle", c.loaded_at, start, f"{c.machine_id} loaded {tonnes}", [c.machine_id],
                                 lat=c.load_lat, lon=c.load_lon))
        band = f", {c.band}" if isinstance(c.band, str) and c.band else ""
        events.append(_event("cycle", c.dumped_at, start, f"{c.machine_id} dumped {tonnes}{band}", [c.machine_id],
                             lat=c.dump_lat, lon=c.dump_lon,
                             level="warning" if isinstance(c.band, str) and c.band.startswith("over") else "info"))
    return events


def encounter_events(read: Read, site_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [_event("encounter", e.at, start,
                   f"{e.machine_a} and {e.machine_b} came within {e.min_distance_m:.0f} m ({e.level})",
                   [e.machine_a, e.machine_b], zone=e.zone, lat=e.lat, lon=e.lon, level=e.level)
            for e in read_encounters(read, site_id, start, end).itertuples()]


def alarm_events(conn: psycopg.Connection, site_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Alarms that happened in the period."""
    return [_event("alarm", a["at"], start, a["message"], [a["machine_id"]] if a["machine_id"] else [],
                   zone=a["zone"], level=a["level"])
            for a in alerts_between(conn, site_id, start, end, MAX_EVENTS)]


def playback(conn: psycopg.Connection, read: Read, site_id: str, start: datetime, end: datetime,
             services: set[str], zone_names: Mapping[str, str]) -> dict[str, Any]:
    """The period's tracks and events (of the installed services among positioning, weight loading and traffic
    awareness, plus alarms), events by time."""
    step = playback_step(start, end)
    t0_ms = int(start.timestamp() * 1000)
    machines: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    if "positioning" in services:
        machines = encode_tracks(read_track(read, site_id, start, end, step), t0_ms)
        events += zone_entry_events(read, site_id, start, end, zone_names)
    if "weight-loading" in services:
        events += cycle_events(read, site_id, start, end)
    if "traffic-awareness" in services:
        events += encounter_events(read, site_id, start, end)
    events += alarm_events(conn, site_id, start, end)
    events.sort(key=lambda e: (e["t"], e["kind"], e["text"]))
    return {"site_id": site_id, "from": start.isoformat(), "to": end.isoformat(), "t0_ms": t0_ms, "step_s": step,
            "duration_s": int((end - start).total_seconds()), "encoding": ENCODING, "machines": machines,
            "events": events[:MAX_EVENTS], "events_truncated": len(events) > MAX_EVENTS}


ENCODING = ("per machine: t, lat, lon are delta-encoded integer columns (running sums give seconds from "
            "t0_ms, and microdegrees); s has one state letter per sample (m moving, i idle, o off, u unknown); "
            "positions between samples are interpolated linearly")
