"""Close encounters between machines: every machine's position on a common time grid, close pairs, time to
collision, encounter episodes, their alerts and rows.

docs/DOMAIN.md §Traffic awareness and collision warning: warning when two moving machines come within 20 m
with time to collision under 8 s, critical within 10 m or under 4 s (SitePulse defaults, ISO 21815 / EMESRT
L7-L8 awareness and advisory level); pairs meant to be close are excluded (a loader with the hauler it is
loading, machines parked in one parking zone). Encounters combine machines, so a step decides them only up
to the frontier every machine has passed; an episode is written once no later moment can join it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from microservices.sdk import Outputs
from microservices.series import KEY_SPAN, stamps
from microservices.traffic_awareness.roads import Layout
from microservices.traffic_awareness.track import Positions, Setup
from sitepulse.geo import LocalFrame, time_to_collision

WARNING, CRITICAL = 1, 2
LEVEL_NAMES = {WARNING: "warning", CRITICAL: "critical"}
LOADING_UNITS = ("loader", "excavator")
MOMENT_COLUMNS = ["a", "b", "t", "d", "ttc", "closing", "level", "x", "y", "next_a", "next_b"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encounters(out: Outputs, positions: Positions, setup: Setup, done: int | None, open_: list[dict[str, Any]],
               frontier: int) -> tuple[int | None, list[dict[str, Any]]]:
    """Synchronise every machine on the grid from after ``done`` up to the frontier, flag close pairs, emit the
    encounters that became final; returns the new ``done`` and the episodes still open (JSON records)."""
    settings, ids, t = setup.settings, positions.ids, positions.t
    grid_ms = int(round(settings.grid_s * 1000))
    first = (done + grid_ms) if done is not None else int(-(-t.min() // grid_ms) * grid_ms)
    last = frontier // grid_ms * grid_ms
    merge_ms = int(round(settings.merge_s * 1000))
    carried = open_episodes_from_state(open_)
    if last < first:
        return done, open_
    grid = np.arange(first, last + 1, grid_ms, dtype=np.int64)
    present, (gx, gy, gvx, gvy, gspeed, gsigma, gvsigma), gnext = interpolate(
        positions.group, t, [positions.x, positions.y, positions.vx, positions.vy, np.nan_to_num(positions.speed),
                             np.nan_to_num(positions.sigma), np.nan_to_num(positions.velocity_sigma)], len(ids), grid,
        int(settings.max_gap_s * 1000), nearest=(6,))  # the velocity's error: the nearer sample's (below)
    moving = present & (gspeed >= settings.moving_min_kmh)
    k, m = np.nonzero(moving)
    i, j = close_pairs(k, m, gx[k, m], gy[k, m], settings.warning_distance_m)
    moments = pd.DataFrame(columns=MOMENT_COLUMNS)
    if len(i):
        ki, mi, mj = k[i], m[i], m[j]
        px, py = gx[ki, mj] - gx[ki, mi], gy[ki, mj] - gy[ki, mi]
        rvx, rvy = gvx[ki, mj] - gvx[ki, mi], gvy[ki, mj] - gvy[ki, mi]
        d = np.hypot(px, py)
        closing = -(px * rvx + py * rvy) / np.maximum(d, 1e-6)
        # a closing speed within the filtered velocities' error is not closing in (two trucks in convoy differ
        # by mm/s, which would give a finite time to collision at any distance just over the radius)
        # a collision course must hold beyond the pair's position error: the predicted miss distance is compared
        # with the radius less that error (RTK: the radius; metres of jitter: a near-miss, not a pass in lanes)
        error = np.hypot(gsigma[ki, mi], gsigma[ki, mj])
        radius = np.maximum(settings.collision_radius_m - error, 0.0)
        ttc = np.where((closing * 3.6 >= settings.min_closing_kmh) | (d <= radius),
                       time_to_collision(px, py, rvx, rvy, radius), np.inf)
        # ... and beyond the velocities' error carried over that time: a machine turning at a junction has a
        # velocity its filter has not followed yet (and knows it: the fixes and its own heading disagree with
        # it), so the straight line it was on is no collision course. That error is the nearer sample's: a turn
        # between two samples happened before the instant or after it, whichever is likelier, not a blend of both
        velocity_error = np.hypot(gvsigma[ki, mi], gvsigma[ki, mj])
        ahead = np.where(np.isfinite(ttc), ttc, 0.0)
        radius = np.maximum(settings.collision_radius_m - np.hypot(error, velocity_error * ahead), 0.0)
        ttc = np.where(np.isfinite(ttc), time_to_collision(px, py, rvx, rvy, radius), np.inf)
        level = encounter_level(d, ttc, warning_distance_m=settings.warning_distance_m,
                                warning_ttc_s=settings.warning_ttc_s,
                                critical_distance_m=settings.critical_distance_m,
                                critical_ttc_s=settings.critical_ttc_s)
        keep = (level > 0) & ~meant_to_be_close(setup, ids, gx, gy, ki, mi, mj)
        moments = pd.DataFrame({
            "a": ids[mi[keep]], "b": ids[mj[keep]], "t": grid[ki[keep]], "d": d[keep], "ttc": ttc[keep],
            "closing": closing[keep], "level": level[keep],
            "x": (gx[ki, mi][keep] + gx[ki, mj][keep]) / 2, "y": (gy[ki, mi][keep] + gy[ki, mj][keep]) / 2,
            "next_a": gnext[ki, mi][keep], "next_b": gnext[ki, mj][keep]})
    episodes, of_moment = merge_episodes(moments, carried, merge_ms)
    alert(out, episodes, moments, of_moment)
    final = episodes["last"].to_numpy(np.int64) + merge_ms <= last if not episodes.empty else np.zeros(0, bool)
    write_encounters(out, setup.layout, setup.frame, episodes[final])
    return int(last), open_episodes_to_state(episodes[~final])


def meant_to_be_close(setup: Setup, ids: np.ndarray, gx: np.ndarray, gy: np.ndarray, k: np.ndarray,
                      mi: np.ndarray, mj: np.ndarray) -> np.ndarray:
    """Pairs excluded by design (docs/DOMAIN.md): a loading unit with a hauler in its load zone (the one it is
    loading, spotting or pulling out), and two machines both inside one parking zone."""
    model, settings, kinds = setup.layout, setup.settings, setup.kinds
    excluded = np.zeros(len(k), dtype=bool)
    if model is None or len(k) == 0:
        return excluded
    xa, ya, xb, yb = gx[k, mi], gy[k, mi], gx[k, mj], gy[k, mj]
    if model.parking:
        ina = model.index.membership(xa, ya)[:, model.parking]
        inb = model.index.membership(xb, yb)[:, model.parking]
        excluded |= (ina & inb).any(axis=1)
    if model.load:
        kind = np.array([kinds.get(m, "other") for m in ids], dtype=object)
        unit = np.isin(kind, LOADING_UNITS)
        hauler = kind == "hauler"
        pair = (unit[mi] & hauler[mj]) | (hauler[mi] & unit[mj])
        if pair.any():
            ina = model.index.membership(xa, ya, settings.loading_margin_m)[:, model.load]
            inb = model.index.membership(xb, yb, settings.loading_margin_m)[:, model.load]
            excluded |= pair & (ina & inb).any(axis=1)
    return excluded


def alert(out: Outputs, episodes: pd.DataFrame, moments: pd.DataFrame, of_moment: np.ndarray) -> None:
    """One alert when an encounter starts (at its first level) and one when it first turns critical.

    Both are decided by the data alone (the first moment, the first critical moment), so the same alerts
    come out whatever the batches; the key (pair, start, level) makes replays send nothing twice.
    """
    if moments.empty:
        return
    frame = moments.assign(episode=of_moment).sort_values(["episode", "t"], kind="stable")
    by_episode = frame.groupby("episode", sort=True)
    firsts = by_episode.head(1).set_index("episode")
    criticals = frame[frame["level"] == CRITICAL].groupby("episode", sort=True).head(1).set_index("episode")
    before = episodes["alerted"].to_numpy(np.int64)
    due = []  # (episode, order, moment): only episodes that owe an alert are visited row by row
    for episode, moment in firsts[before[firsts.index] == 0].iterrows():
        due.append((int(episode), 0, moment))
    level_now = before.copy()  # the level alerted once this step's first alerts are out
    level_now[firsts.index] = np.where(before[firsts.index] == 0, firsts["level"].to_numpy(np.int64),
                                       before[firsts.index])
    for episode, moment in criticals[level_now[criticals.index] < CRITICAL].iterrows():
        due.append((int(episode), 1, moment))
    for episode, _, moment in sorted(due, key=lambda item: item[:2]):
        ep = episodes.iloc[episode]
        level = LEVEL_NAMES[int(moment["level"])]
        start = _instant(int(ep["start"])).isoformat()
        at = _instant(int(moment["t"]))
        ttc = float(moment["ttc"])
        out.alert(
            f"encounter:{ep['a']}:{ep['b']}:{start}:{level}",
            f"{ep['a']} and {ep['b']} {float(moment['d']):.0f} m apart"
            + (f", {ttc:.1f} s to collision" if np.isfinite(ttc) else "")
            + f" at {at:%H:%M:%S} UTC", level=level, at=at, machine_id=str(ep["a"]),
            data={"machine_a": ep["a"], "machine_b": ep["b"], "distance_m": round(float(moment["d"]), 2),
                  "ttc_s": round(ttc, 2) if np.isfinite(ttc) else None,
                  "closing_speed_kmh": round(float(moment["closing"]) * 3.6, 1), "started_at": start,
                  # the samples that let this instant be decided: for publish-to-alert latency
                  "caused_by": {str(ep["a"]): _instant(int(moment["next_a"])).isoformat(),
                                str(ep["b"]): _instant(int(moment["next_b"])).isoformat()}})
    seen = by_episode["level"].max()
    column = episodes.columns.get_loc("alerted")
    episodes.iloc[seen.index.to_numpy(), column] = np.maximum(before[seen.index], seen.to_numpy(np.int64))


def write_encounters(out: Outputs, model: Layout | None, frame: LocalFrame, final: pd.DataFrame) -> None:
    """One row per finished encounter: pair, start/end, closest moment, minimum distance and TTC, level."""
    if final.empty:
        return
    x, y = final["at_x"].to_numpy(float), final["at_y"].to_numpy(float)
    lon, lat = frame.to_lonlat(x, y)
    zone = model.zone_ids[model.index.assign(x, y)] if model else np.full(len(final), None, dtype=object)
    ttc = final["min_ttc"].to_numpy(float)
    out.write("encounters", pd.DataFrame({
        "machine_a": final["a"].to_numpy(object), "machine_b": final["b"].to_numpy(object),
        "started_at": stamps(final["start"].to_numpy(np.int64)),
        "ended_at": stamps(final["last"].to_numpy(np.int64)),
        "at": stamps(final["at"].to_numpy(np.int64)),
        "min_distance_m": np.round(final["min_d"].to_numpy(float), 2),
        "min_ttc_s": np.where(np.isfinite(ttc), np.round(ttc, 2), np.nan),
        "max_closing_kmh": np.round(final["max_closing"].to_numpy(float) * 3.6, 1),
        "level": [LEVEL_NAMES[int(v)] for v in final["level"]],
        "lat": np.round(lat, 7), "lon": np.round(lon, 7), "zone": zone}))
    for a, b, start, last in zip(final["a"], final["b"], final["start"], final["last"], strict=True):
        ended = _instant(int(last))  # the encounter's alarms (its first level, then critical) clear: apart again
        for level in LEVEL_NAMES.values():
            out.clear(f"encounter:{a}:{b}:{_instant(int(start)).isoformat()}:{level}", ended,
                      f"{a} and {b} apart again (encounter ended {ended:%H:%M:%S} UTC)")


def interpolate(group: np.ndarray, t: np.ndarray, values: list[np.ndarray], machines: int, grid: np.ndarray,
                max_gap_ms: int, nearest: tuple[int, ...] = ()) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Values of every machine at every grid instant (linear between the samples around it; those at the indices
    in ``nearest``: the nearer sample's).

    Returns ``present`` (instants x machines), one (instants x machines) array per value, and the time of the
    sample at or after each instant (the one that let it be decided); a machine is present at an instant when
    it has a sample at it, or samples on both sides at most ``max_gap_ms`` apart.
    """
    shape = (len(grid), machines)
    present = np.zeros(shape, dtype=bool)
    out = [np.full(shape, np.nan) for _ in values]
    next_t = np.zeros(shape, dtype=np.int64)
    if len(t) == 0 or len(grid) == 0:
        return present, out, next_t
    key = group.astype(np.int64) * KEY_SPAN + t.astype(np.int64)
    want = (np.arange(machines, dtype=np.int64)[None, :] * KEY_SPAN + grid.astype(np.int64)[:, None]).ravel()
    after = np.searchsorted(key, want, side="left")
    before = after - 1
    owner = np.repeat(np.arange(machines)[None, :], len(grid), axis=0).ravel()
    at_or_after = np.clip(after, 0, len(t) - 1)
    at_before = np.clip(before, 0, len(t) - 1)
    has_after = (after < len(t)) & (group[at_or_after] == owner)
    has_before = (before >= 0) & (group[at_before] == owner)
    exact = has_after & (key[at_or_after] == want)
    span = t[at_or_after] - t[at_before]
    between = has_after & has_before & ~exact & (span <= max_gap_ms) & (span > 0)
    ok = exact | between
    w = np.where(between, (want - key[at_before]) / np.where(span > 0, span, 1), 0.0)
    present.ravel()[:] = ok
    for index, (target, value) in enumerate(zip(out, values, strict=True)):
        mixed = np.where(w <= 0.5, value[at_before], value[at_or_after]) if index in nearest \
            else value[at_before] * (1 - w) + value[at_or_after] * w
        target.ravel()[:] = np.where(exact, value[at_or_after], np.where(between, mixed, np.nan))
    next_t.ravel()[:] = t[at_or_after]
    if len(out) >= 2:
        present &= np.isfinite(out[0]) & np.isfinite(out[1])
    return present, out, next_t


HALF_NEIGHBOURS = ((0, 0), (1, 0), (0, 1), (1, 1), (1, -1))


def close_pairs(instant: np.ndarray, machine: np.ndarray, x: np.ndarray, y: np.ndarray,
                radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Row index pairs (i, j), machine[i] < machine[j], of positions at the same instant within ``radius_m``.

    Spatial pruning with a uniform grid of ``radius_m`` cells: a close pair lies in one cell or in two
    neighbouring ones, so only five cell offsets are joined (each unordered pair of cells once).
    """
    if len(x) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cells = pd.DataFrame({"k": instant, "cx": np.floor(x / radius_m).astype(np.int64),
                          "cy": np.floor(y / radius_m).astype(np.int64), "row": np.arange(len(x))})
    found_i, found_j = [], []
    for dx, dy in HALF_NEIGHBOURS:
        other = cells.assign(cx=cells["cx"] - dx, cy=cells["cy"] - dy)
        joined = cells.merge(other, on=["k", "cx", "cy"], suffixes=("_i", "_j"))
        i, j = joined["row_i"].to_numpy(), joined["row_j"].to_numpy()
        if dx == 0 and dy == 0:
            keep = machine[i] < machine[j]
            i, j = i[keep], j[keep]
        found_i.append(i)
        found_j.append(j)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    swap = machine[i] > machine[j]
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    near = np.hypot(x[j] - x[i], y[j] - y[i]) < radius_m
    return i[near], j[near]


def encounter_level(distance_m: np.ndarray, ttc_s: np.ndarray, *, warning_distance_m: float, warning_ttc_s: float,
                    critical_distance_m: float, critical_ttc_s: float) -> np.ndarray:
    """0 (none), WARNING or CRITICAL per moment (docs/DOMAIN.md defaults: warning within 20 m with TTC under 8 s;
    critical within 10 m or TTC under 4 s, both only for pairs within the warning distance)."""
    within = distance_m < warning_distance_m
    critical = within & ((distance_m < critical_distance_m) | (ttc_s < critical_ttc_s))
    warning = within & (ttc_s < warning_ttc_s)
    return np.where(critical, CRITICAL, np.where(warning, WARNING, 0)).astype(np.int8)


EPISODE_COLUMNS = ["a", "b", "start", "last", "at", "min_d", "min_ttc", "max_closing", "level", "alerted",
                   "at_x", "at_y"]


def merge_episodes(moments: pd.DataFrame, carried: pd.DataFrame, merge_ms: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Group flagged moments of each pair into encounter episodes, continuing the carried open ones.

    ``moments``: a, b, t, d, ttc, closing, level, x, y (one row per flagged pair and instant). ``carried``:
    open episodes (EPISODE_COLUMNS). Moments less than or equal to ``merge_ms`` after the previous one of
    the same pair join its episode. The minimum distance's time is the first instant that reaches it.
    Returns the episodes and, per moment, the index of its episode.
    """
    rows = pd.DataFrame({
        "a": moments["a"], "b": moments["b"], "start": moments["t"], "last": moments["t"], "at": moments["t"],
        "min_d": moments["d"], "min_ttc": moments["ttc"], "max_closing": moments["closing"],
        "level": moments["level"], "alerted": 0, "at_x": moments["x"], "at_y": moments["y"],
        "moment": np.arange(len(moments))})
    # only non-empty frames: an empty one's (object) columns would otherwise take part in the result's dtypes
    parts = [p for p in (carried[EPISODE_COLUMNS].assign(moment=-1), rows) if not p.empty]
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else rows
    if frame.empty:
        return frame.reindex(columns=EPISODE_COLUMNS), np.zeros(0, np.int64)
    frame = frame.sort_values(["a", "b", "start", "moment"], kind="stable").reset_index(drop=True)
    pair_change = (frame["a"] != frame["a"].shift()) | (frame["b"] != frame["b"].shift())
    previous_last = frame.groupby(["a", "b"], sort=False)["last"].shift()
    new = pair_change | (frame["start"] - previous_last > merge_ms)
    frame["episode"] = new.cumsum()
    closest = frame.sort_values(["episode", "min_d", "at"], kind="stable").groupby("episode").head(1)
    closest = closest.set_index("episode")
    grouped = frame.groupby("episode")
    out = pd.DataFrame({
        "a": grouped["a"].first(), "b": grouped["b"].first(), "start": grouped["start"].min(),
        "last": grouped["last"].max(), "at": closest["at"], "min_d": closest["min_d"],
        "min_ttc": grouped["min_ttc"].min(), "max_closing": grouped["max_closing"].max(),
        "level": grouped["level"].max(), "alerted": grouped["alerted"].max(), "at_x": closest["at_x"],
        "at_y": closest["at_y"]})
    of_moment = np.zeros(len(moments), np.int64)
    mine = frame["moment"].to_numpy() >= 0
    of_moment[frame["moment"].to_numpy()[mine]] = frame["episode"].to_numpy()[mine] - 1
    return out.reset_index(drop=True)[EPISODE_COLUMNS], of_moment


def open_episodes_to_state(episodes: pd.DataFrame) -> list[dict[str, Any]]:
    """Open episodes as JSON-safe records: a pair flagged while separating has min_ttc inf, which JSON cannot
    hold (the state is jsonb), so non-finite floats are stored as None."""
    records = []
    for record in episodes.to_dict("records"):
        for column, value in record.items():
            if isinstance(value, np.generic):
                value = value.item()
            record[column] = None if isinstance(value, float) and not math.isfinite(value) else value
        records.append(record)
    return records


def open_episodes_from_state(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The open episodes a previous step kept, min_ttc None read back as inf (no time to collision)."""
    carried = pd.DataFrame(records, columns=EPISODE_COLUMNS)
    if not carried.empty:
        carried["min_ttc"] = carried["min_ttc"].astype(float).fillna(np.inf)
    return carried


def _instant(ms: int) -> datetime:
    """One epoch-millisecond time as a datetime, exactly (``_stamp`` costs ~0.2 ms a call, per alert field)."""
    return _EPOCH + timedelta(milliseconds=ms)
