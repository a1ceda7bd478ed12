"""The traffic-awareness service: declaration, and ``process`` turning every machine's fixes into encounters,
queues and road use, final and append-only.

How ``process`` stays incremental and deterministic (microservices/sdk.py rules):
- per machine the state keeps a short tail of samples (the causal jump filter's window and the sample
  before the next instant to interpolate); a sample's filtered position depends only on samples before
  it, so it is final as soon as it arrives;
- encounters combine machines, so they are computed on a common time grid only up to the *frontier*:
  the newest instant every machine that is still reporting has passed (a machine silent for
  ``silence_s`` of data time stops holding it back). Everything up to the frontier is final and the
  service says so with ``outputs.finalise``: a sample at or before it, from any machine, makes the runner
  replay, so a late machine cannot be missing from what was emitted;
- an encounter row is written once no later moment can join it (``merge_s`` past its last moment); its
  alerts are keyed by pair, start and level, so replays send nothing twice;
- queues and road use depend on one machine's samples only, and are exact integer or per-sample values.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel

from microservices.motion import motion_from_fixes
from microservices.sdk import Batch, Card, Kpi, Outputs, Service
from microservices.shifts import shift_columns
from microservices.traffic_awareness import detect
from microservices.traffic_awareness.settings import TrafficSettings
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import SiteConfig, ZoneType
from sitepulse.zones import ZoneIndex

STATE_VERSION = 1
TAIL_FIELDS = ("t", "x", "y", "speed", "heading", "fx", "fy")
LOADING_UNITS = ("loader", "excavator")

KPIS = (
    Kpi(
        name="queue_minutes_per_load",
        description="minutes haulers waited in queues at load zones, per load served",
        unit="min/load",
        higher_is_better=False,
        daily_sql="""
            SELECT s.day, coalesce(q.minutes, 0) / s.loads AS value
            FROM (SELECT (served_from AT TIME ZONE 'UTC')::date AS day, count(*)::float AS loads
                  FROM traffic_awareness.services
                  WHERE site_id = %(site_id)s AND zone_type = 'load'
                    AND served_from >= %(start)s AND served_from < %(end)s GROUP BY 1) s
            LEFT JOIN (SELECT (queued_from AT TIME ZONE 'UTC')::date AS day, sum(wait_s) / 60.0 AS minutes
                       FROM traffic_awareness.queues
                       WHERE site_id = %(site_id)s AND zone_type = 'load'
                         AND queued_from >= %(start)s AND queued_from < %(end)s GROUP BY 1) q ON q.day = s.day
            WHERE s.loads > 0 ORDER BY s.day""",
    ),
    Kpi(
        name="critical_encounters_per_1000_machine_hours",
        description="critical close encounters between machines per 1000 engine-on machine-hours",
        unit="per 1000 h",
        higher_is_better=False,
        daily_sql="""
            SELECT a.day, 1000.0 * coalesce(e.n, 0) / a.hours AS value
            FROM (SELECT (minute AT TIME ZONE 'UTC')::date AS day, sum(moving_ms + idle_ms) / 3.6e6 AS hours
                  FROM positioning.activity
                  WHERE site_id = %(site_id)s AND minute >= %(start)s AND minute < %(end)s GROUP BY 1) a
            LEFT JOIN (SELECT (at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
                       FROM traffic_awareness.encounters
                       WHERE site_id = %(site_id)s AND level = 'critical' GROUP BY 1) e ON e.day = a.day
            WHERE a.hours > 0 ORDER BY a.day""",
    ),
)


class SiteModel:
    """A site's zones and road segments prepared once, in the site's local frame."""

    def __init__(self, site: SiteConfig, settings: TrafficSettings) -> None:
        self.site = site
        self.frame = site.frame
        self.index = ZoneIndex(site)
        zones = self.index.zones
        self.zone_ids = np.array([z.id for z in zones] + [None], dtype=object)
        self.parking = [k for k, z in enumerate(zones) if z.type == ZoneType.parking]
        self.load = [k for k, z in enumerate(zones) if z.type == ZoneType.load]
        self.served = [k for k, z in enumerate(zones) if z.type in (ZoneType.load, ZoneType.dump)]
        self.road_zones = [k for k, z in enumerate(zones) if z.type == ZoneType.road]
        self.unlaned = [k for k, z in enumerate(zones) if z.type in (ZoneType.parking, ZoneType.workshop)]
        ids, kinds, limits, lengths, shapes = [], [], [], [], []
        for path in site.paths:
            lons, lats = zip(*path.points, strict=True)
            px, py = self.frame.to_xy(list(lons), list(lats))
            for k, piece in enumerate(detect.split_line(np.c_[px, py], settings.segment_length_m)):
                line = shapely.LineString(piece)
                ids.append(f"{path.id}#{k + 1}")
                kinds.append("road")
                limits.append(path.speed_limit_kmh or np.inf)
                lengths.append(line.length)
                shapes.append(line)
        roads = list(shapes)
        self.lines = []
        for path in site.paths:
            lons, lats = zip(*path.points, strict=True)
            px, py = self.frame.to_xy(list(lons), list(lats))
            self.lines.append(shapely.LineString(np.c_[px, py]))
        for k in self.road_zones:
            zone, polygon = zones[k], self.index.polygons[k]
            ids.append(zone.id)
            kinds.append("junction")
            limits.append(zone.speed_limit_kmh or np.inf)
            minx, miny, maxx, maxy = polygon.bounds
            lengths.append(float(np.hypot(maxx - minx, maxy - miny)))
            shapes.append(polygon)
        self.segments = detect.Segments(ids, kinds, np.array(limits, float), np.array(lengths, float), shapes,
                                        shapely.STRtree(roads) if roads else None)


def _stamp(ms: Any) -> Any:
    return pd.to_datetime(ms, unit="ms", utc=True)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant(ms: int) -> datetime:
    """One epoch-millisecond time as a datetime, exactly (``_stamp`` costs ~0.2 ms a call, per alert field)."""
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(ts: pd.Series) -> np.ndarray:
    return ((ts.dt.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(
        dtype=np.int64)


def _json(values: np.ndarray) -> list:
    """A float array as a JSON-safe list (NaN and inf as None)."""
    array = np.asarray(values, dtype=float)
    out = array.tolist()
    if not np.isfinite(array).all():
        out = [v if np.isfinite(v) else None for v in out]
    return out


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
    carried = pd.DataFrame(records, columns=detect.EPISODE_COLUMNS)
    if not carried.empty:
        carried["min_ttc"] = carried["min_ttc"].astype(float).fillna(np.inf)
    return carried


@lru_cache(maxsize=64)
def _frame_at(lat: float, lon: float) -> LocalFrame:
    """A local frame for a site without a site file (building the transformer is the slow part)."""
    return LocalFrame(lat, lon)


class TrafficAwareness(Service):
    """Close encounters between machines, queues at loaders and dumps, congestion, and live alerts."""

    name = "traffic-awareness"
    version = "0.1.0"
    summary = ("Close encounters between machines (distance, closing speed, time to collision; warning/critical) "
               "with live alerts; queues and loader idle time at load and dump zones; congestion per road "
               "segment; re-allocation of haulers between loaders")
    depends_on = ("positioning",)
    consumes = ("lat", "lon", "speed_kmh", "heading_deg")
    tables = (
        "traffic_awareness.encounters",
        "traffic_awareness.queues",
        "traffic_awareness.services",
        "traffic_awareness.segment_use",
    )
    migrations = Path(__file__).parent / "migrations"
    Settings = TrafficSettings
    kpis = KPIS
    alert_channel = "traffic"  # alerts go to sites/{site}/alerts/traffic

    def __init__(self) -> None:
        self._models: dict[str, SiteModel] = {}

    def site_model(self, site: SiteConfig, settings: TrafficSettings) -> SiteModel:
        """The prepared zones and segments of a site, cached by the site file and segment length."""
        key = hashlib.sha1((site.model_dump_json() + repr(settings.segment_length_m)).encode()).hexdigest()
        model = self._models.get(key)
        if model is None:
            if len(self._models) > 64:
                self._models.clear()
            model = self._models[key] = SiteModel(site, settings)
        return model

    # --- processing ----------------------------------------------------------------------------

    def process(self, batch: Batch, state: dict[str, Any], settings: BaseModel) -> tuple[Outputs, dict]:
        """Add the new fixes to each machine's tail, then emit what became final up to the site's frontier."""
        if not isinstance(settings, TrafficSettings):
            settings = TrafficSettings.model_validate(settings.model_dump())
        out = Outputs()
        if batch.telemetry.empty:
            return out, state
        state = dict(state) if state.get("v") == STATE_VERSION else {
            "v": STATE_VERSION, "tails": {}, "done": None, "open": [], "stays": {}}
        model = self.site_model(batch.site, settings) if batch.site is not None and (
            batch.site.zones or batch.site.paths) else None
        frame = model.frame if model is not None else self._local_frame(batch.site, state, batch.telemetry)
        rows = self._rows(batch.telemetry, state["tails"], frame)
        if rows.empty:
            return out, state
        ids = np.array(sorted(rows["machine_id"].unique()), dtype=object)
        group = np.searchsorted(ids, rows["machine_id"].to_numpy(object))
        t = rows["t"].to_numpy(np.int64)
        new = rows["new"].to_numpy(bool)
        x, y = rows["x"].to_numpy(float), rows["y"].to_numpy(float)
        # fused motion: reported heading/speed only where they agree with the track (a dead compass sends 0)
        motion = motion_from_fixes(group, t, x, y, rows["speed"].to_numpy(float),
                                   rows["heading"].to_numpy(float), settings.motion)
        speed, vx, vy = motion.speed_kmh, motion.vx, motion.vy
        run = detect.segments_by_gap(group, t, int(settings.max_gap_s * 1000))
        dr_x, dr_y = detect.dead_reckoning_mm(run, t, vx, vy)
        fx, fy = detect.filter_fixes(run, t, x, y, dr_x, dr_y, int(settings.filter_window_s * 1000),
                                       settings.jump_gate_m)
        if model is not None and settings.lane_offset_m is not None and new.any():
            fx, fy = self._snap(model, settings, fx, fy, speed, motion.course_deg, new)
        fx = np.where(new, np.round(fx, 3), rows["fx"].to_numpy(float))
        fy = np.where(new, np.round(fy, 3), rows["fy"].to_numpy(float))
        # prediction uses the motion of the jump-filtered track over a short window (little lag in turns)
        motion = motion_from_fixes(group, t, fx, fy, rows["speed"].to_numpy(float),
                                   rows["heading"].to_numpy(float), settings.motion, filtered=True)
        speed, vx, vy = motion.speed_kmh, motion.vx, motion.vy
        kinds = dict(zip(batch.machines["machine_id"], batch.machines["kind"], strict=False)) \
            if not batch.machines.empty else {}

        frontier = self._frontier(group, t, len(ids), settings)
        done = self._encounters(out, state, model, frame, settings, ids, group, t, fx, fy, vx, vy, speed, kinds,
                                frontier)
        self._stays(out, state, model, batch.site, settings, ids, group, t, fx, fy, speed, new, kinds)
        self._road_use(out, model, settings, ids, group, t, fx, fy, speed, new)
        self._keep_tails(state, rows, ids, group, t, fx, fy, done, settings)
        out.finalise(_stamp(frontier).to_pydatetime())
        return out, state

    @staticmethod
    def _local_frame(site: SiteConfig | None, state: dict[str, Any], telemetry: pd.DataFrame) -> LocalFrame:
        """Without a site file (or one with no zones and paths): a frame fixed at the first fix (kept in state)."""
        if "origin" not in state:
            fixes = telemetry.dropna(subset=["lat", "lon"])
            first = fixes.iloc[0] if not fixes.empty else {"lat": 0.0, "lon": 0.0}
            state["origin"] = [round(float(first["lat"]), 2), round(float(first["lon"]), 2)]
        return _frame_at(*state["origin"])

    @staticmethod
    def _rows(telemetry: pd.DataFrame, tails: dict[str, Any], frame: LocalFrame) -> pd.DataFrame:
        """Every machine's carried tail plus the new samples (newer than the tail), one per (machine, ts), sorted."""
        fresh = telemetry.dropna(subset=["ts"])
        x, y = frame.to_xy(fresh["lon"].to_numpy(float), fresh["lat"].to_numpy(float))
        new = pd.DataFrame({
            "machine_id": fresh["machine_id"].to_numpy(object), "t": _ms(fresh["ts"]),
            "x": np.round(x, 3), "y": np.round(y, 3),
            "speed": fresh["speed_kmh"].to_numpy(float) if "speed_kmh" in fresh else np.nan,
            "heading": fresh["heading_deg"].to_numpy(float) if "heading_deg" in fresh else np.nan,
            "fx": np.nan, "fy": np.nan, "new": True})
        names: list[str] = []
        columns: dict[str, list] = {f: [] for f in TAIL_FIELDS}
        for machine, tail in tails.items():
            names.extend([machine] * len(tail["t"]))
            for f in TAIL_FIELDS:
                columns[f].extend(tail[f])
        if names:
            carried = pd.DataFrame({"machine_id": np.array(names, dtype=object),
                                    **{f: np.array(columns[f], dtype=float) for f in TAIL_FIELDS}, "new": False})
            carried["t"] = np.array(columns["t"], dtype=np.int64)
            last = carried.groupby("machine_id")["t"].max()
            newest = new["machine_id"].map(last)
            new = new[newest.isna() | (new["t"] > newest)]
            rows = pd.concat([carried, new], ignore_index=True)
        else:
            rows = new
        rows = rows.drop_duplicates(["machine_id", "t"], keep="first")
        return rows.sort_values(["machine_id", "t"], kind="stable").reset_index(drop=True)

    @staticmethod
    def _snap(model: SiteModel, settings: TrafficSettings, fx: np.ndarray, fy: np.ndarray, speed: np.ndarray,
              heading: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map-match new, moving positions on a haul road onto their lane, except near parking and workshop
        zones, where lanes are not kept."""
        eligible = new & (np.nan_to_num(speed, nan=0.0) >= settings.moving_min_kmh) & np.isfinite(fx)
        if model.unlaned and eligible.any():
            rows = np.flatnonzero(eligible)
            inside = model.index.membership(fx[rows], fy[rows], settings.segment_corridor_m)[:, model.unlaned]
            eligible[rows[inside.any(axis=1)]] = False
        return detect.snap_to_lanes(fx, fy, heading, eligible, model.lines, settings.segment_corridor_m,
                                    settings.lane_offset_m, settings.lane_tolerance_m)

    @staticmethod
    def _frontier(group: np.ndarray, t: np.ndarray, machines: int, settings: TrafficSettings) -> int:
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

    def _encounters(self, out: Outputs, state: dict[str, Any], model: SiteModel | None, frame: LocalFrame,
                    settings: TrafficSettings, ids: np.ndarray, group: np.ndarray, t: np.ndarray, fx: np.ndarray,
                    fy: np.ndarray, vx: np.ndarray, vy: np.ndarray, speed: np.ndarray, kinds: dict[str, str],
                    frontier: int) -> int | None:
        """Synchronise every machine on the grid up to the frontier, flag close pairs, emit final encounters."""
        grid_ms = int(round(settings.grid_s * 1000))
        done = state.get("done")
        first = (done + grid_ms) if done is not None else int(-(-t.min() // grid_ms) * grid_ms)
        last = frontier // grid_ms * grid_ms
        merge_ms = int(round(settings.merge_s * 1000))
        carried = open_episodes_from_state(state.get("open") or [])
        if last < first:
            return done
        grid = np.arange(first, last + 1, grid_ms, dtype=np.int64)
        present, (gx, gy, gvx, gvy, gspeed), gnext = detect.interpolate(
            group, t, [fx, fy, vx, vy, np.nan_to_num(speed)], len(ids), grid,
            int(settings.max_gap_s * 1000))
        moving = present & (gspeed >= settings.moving_min_kmh)
        k, m = np.nonzero(moving)
        i, j = detect.close_pairs(k, m, gx[k, m], gy[k, m], settings.warning_distance_m)
        moments = pd.DataFrame(columns=["a", "b", "t", "d", "ttc", "closing", "level", "x", "y", "next_a",
                                        "next_b"])
        if len(i):
            ki, mi, mj = k[i], m[i], m[j]
            px, py = gx[ki, mj] - gx[ki, mi], gy[ki, mj] - gy[ki, mi]
            rvx, rvy = gvx[ki, mj] - gvx[ki, mi], gvy[ki, mj] - gvy[ki, mi]
            d = np.hypot(px, py)
            ttc = detect.time_to_collision(px, py, rvx, rvy, settings.collision_radius_m)
            closing = -(px * rvx + py * rvy) / np.maximum(d, 1e-6)
            level = detect.encounter_level(d, ttc, warning_distance_m=settings.warning_distance_m,
                                           warning_ttc_s=settings.warning_ttc_s,
                                           critical_distance_m=settings.critical_distance_m,
                                           critical_ttc_s=settings.critical_ttc_s)
            keep = (level > 0) & ~self._meant_to_be_close(model, settings, ids, kinds, gx, gy, ki, mi, mj)
            moments = pd.DataFrame({
                "a": ids[mi[keep]], "b": ids[mj[keep]], "t": grid[ki[keep]], "d": d[keep], "ttc": ttc[keep],
                "closing": closing[keep], "level": level[keep],
                "x": (gx[ki, mi][keep] + gx[ki, mj][keep]) / 2, "y": (gy[ki, mi][keep] + gy[ki, mj][keep]) / 2,
                "next_a": gnext[ki, mi][keep], "next_b": gnext[ki, mj][keep]})
        episodes, of_moment = detect.merge_episodes(moments, carried, merge_ms)
        self._alerts(out, episodes, moments, of_moment)
        final = episodes["last"].to_numpy(np.int64) + merge_ms <= last if not episodes.empty else np.zeros(0, bool)
        self._write_encounters(out, model, frame, episodes[final])
        still = episodes[~final]
        state["open"] = open_episodes_to_state(still)
        state["done"] = int(last)
        return int(last)

    @staticmethod
    def _meant_to_be_close(model: SiteModel | None, settings: TrafficSettings, ids: np.ndarray,
                           kinds: dict[str, str], gx: np.ndarray, gy: np.ndarray, k: np.ndarray, mi: np.ndarray,
                           mj: np.ndarray) -> np.ndarray:
        """Pairs excluded by design (DOMAIN.md): a loading unit with a hauler in its load zone (the one it is
        loading, spotting or pulling out), and two machines both inside one parking zone."""
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

    @staticmethod
    def _alerts(out: Outputs, episodes: pd.DataFrame, moments: pd.DataFrame, of_moment: np.ndarray) -> None:
        """One alert when an encounter starts (at its first level) and one when it first turns critical.

        Both are decided by the data alone (the first moment, the first critical moment), so the same alerts
        come out whatever the batches; the key (pair, start, level) makes replays send nothing twice.
        """
        if moments.empty:
            return
        frame = moments.assign(episode=of_moment).sort_values(["episode", "t"], kind="stable")
        by_episode = frame.groupby("episode", sort=True)
        firsts = by_episode.head(1).set_index("episode")
        criticals = frame[frame["level"] == detect.CRITICAL].groupby("episode", sort=True).head(1).set_index("episode")
        before = episodes["alerted"].to_numpy(np.int64)
        due = []  # (episode, order, moment): only episodes that owe an alert are visited row by row
        for episode, moment in firsts[before[firsts.index] == 0].iterrows():
            due.append((int(episode), 0, moment))
        level_now = before.copy()  # the level alerted once this step's first alerts are out
        level_now[firsts.index] = np.where(before[firsts.index] == 0, firsts["level"].to_numpy(np.int64),
                                           before[firsts.index])
        for episode, moment in criticals[level_now[criticals.index] < detect.CRITICAL].iterrows():
            due.append((int(episode), 1, moment))
        for episode, _, moment in sorted(due, key=lambda item: item[:2]):
            ep = episodes.iloc[episode]
            level = detect.LEVEL_NAMES[int(moment["level"])]
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

    @staticmethod
    def _write_encounters(out: Outputs, model: SiteModel | None, frame: LocalFrame, final: pd.DataFrame) -> None:
        """One row per finished encounter: pair, start/end, closest moment, minimum distance and TTC, level."""
        if final.empty:
            return
        x, y = final["at_x"].to_numpy(float), final["at_y"].to_numpy(float)
        lon, lat = frame.to_lonlat(x, y)
        zone = model.zone_ids[model.index.assign(x, y)] if model else np.full(len(final), None, dtype=object)
        ttc = final["min_ttc"].to_numpy(float)
        out.write("encounters", pd.DataFrame({
            "machine_a": final["a"].to_numpy(object), "machine_b": final["b"].to_numpy(object),
            "started_at": _stamp(final["start"].to_numpy(np.int64)),
            "ended_at": _stamp(final["last"].to_numpy(np.int64)),
            "at": _stamp(final["at"].to_numpy(np.int64)),
            "min_distance_m": np.round(final["min_d"].to_numpy(float), 2),
            "min_ttc_s": np.where(np.isfinite(ttc), np.round(ttc, 2), np.nan),
            "max_closing_kmh": np.round(final["max_closing"].to_numpy(float) * 3.6, 1),
            "level": [detect.LEVEL_NAMES[int(v)] for v in final["level"]],
            "lat": np.round(lat, 7), "lon": np.round(lon, 7), "zone": zone}))

    def _stays(self, out: Outputs, state: dict[str, Any], model: SiteModel | None, site: SiteConfig | None,
               settings: TrafficSettings, ids: np.ndarray, group: np.ndarray, t: np.ndarray, fx: np.ndarray,
               fy: np.ndarray, speed: np.ndarray, new: np.ndarray, kinds: dict[str, str]) -> None:
        """Queues and service stops of haulers at load and dump zones (per machine, final on arrival)."""
        if model is None or not model.served:
            return
        stays = dict(state.get("stays") or {})
        zones = model.index.zones
        found = []
        for code, machine in enumerate(ids):
            if kinds.get(machine) != "hauler":
                continue
            own = np.flatnonzero((group == code) & new)
            if len(own) == 0:
                continue
            x, y = fx[own], fy[own]
            known = np.isfinite(x) & np.isfinite(y)
            points = shapely.points(np.where(known, x, 0), np.where(known, y, 0))
            distance = np.column_stack([shapely.distance(model.index.polygons[z], points) for z in model.served])
            distance[~known] = np.inf
            nearest = distance.argmin(axis=1)
            near = np.where(distance[np.arange(len(own)), nearest] <= settings.queue_approach_m,
                            np.array(model.served)[nearest], detect.NONE)
            inside = distance[np.arange(len(own)), nearest] <= 0
            stopped = np.nan_to_num(speed[own], nan=0.0) < settings.queue_stop_kmh
            visits, carried = detect.zone_stays(t[own], near, inside, stopped, stays.get(machine),
                                                int(settings.service_min_s * 1000))
            stays[machine] = carried
            found += [(machine, v) for v in visits if v.served_from is not None]
        state["stays"] = {m: c for m, c in stays.items() if c is not None}
        if not found:
            return
        served_from = np.array([v.served_from for _, v in found], dtype=np.int64)
        shift_date, shift = shift_columns(served_from, site)
        out.write("services", pd.DataFrame({
            "machine_id": [m for m, _ in found], "zone": [zones[v.zone].id for _, v in found],
            "zone_type": [zones[v.zone].type.value for _, v in found],
            "arrived_at": _stamp(np.array([v.arrived for _, v in found], dtype=np.int64)),
            "served_from": _stamp(served_from),
            "served_to": _stamp(np.array([v.served_to for _, v in found], dtype=np.int64)),
            "left_at": _stamp(np.array([v.left for _, v in found], dtype=np.int64)),
            "service_s": [(v.served_to - v.served_from) / 1000 for _, v in found],
            "shift_date": shift_date, "shift": shift}))
        queued = [(m, v) for m, v in found if v.queued_from is not None
                  and v.queued_to - v.queued_from >= settings.queue_min_s * 1000]
        if not queued:
            return
        start = np.array([v.queued_from for _, v in queued], dtype=np.int64)
        end = np.array([v.queued_to for _, v in queued], dtype=np.int64)
        shift_date, shift = shift_columns(start, site)
        out.write("queues", pd.DataFrame({
            "machine_id": [m for m, _ in queued], "zone": [zones[v.zone].id for _, v in queued],
            "zone_type": [zones[v.zone].type.value for _, v in queued],
            "queued_from": _stamp(start), "queued_to": _stamp(end), "wait_s": (end - start) / 1000,
            "shift_date": shift_date, "shift": shift}))

    @staticmethod
    def _road_use(out: Outputs, model: SiteModel | None, settings: TrafficSettings, ids: np.ndarray,
                  group: np.ndarray, t: np.ndarray, fx: np.ndarray, fy: np.ndarray, speed: np.ndarray,
                  new: np.ndarray) -> None:
        """Per segment, minute and machine: samples, summed speed and time on it (sum the rows when reading)."""
        if model is None or not model.segments.ids:
            return
        rows = np.flatnonzero(new)
        if len(rows) == 0:
            return
        x, y = fx[rows], fy[rows]
        junction = np.zeros((len(rows), len(model.road_zones)), dtype=bool)
        known = np.isfinite(x) & np.isfinite(y)
        if model.road_zones and known.any():
            junction[known] = model.index.membership(x[known], y[known])[:, model.road_zones]
        segment = detect.assign_segments(model.segments, x, y, junction, settings.segment_corridor_m)
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
        sums["minute"] = _stamp(sums["minute"].to_numpy(np.int64))
        out.write("segment_use", sums)

    @staticmethod
    def _keep_tails(state: dict[str, Any], rows: pd.DataFrame, ids: np.ndarray, group: np.ndarray,
                    t: np.ndarray, fx: np.ndarray, fy: np.ndarray, done: int | None,
                    settings: TrafficSettings) -> None:
        """Per machine: the samples the next call still needs (filter window, interpolation bracket)."""
        tails = {}
        x, y = rows["x"].to_numpy(float), rows["y"].to_numpy(float)
        speed, heading = rows["speed"].to_numpy(float), rows["heading"].to_numpy(float)
        columns = {"t": t, "x": x, "y": y, "speed": speed, "heading": heading, "fx": fx, "fy": fy}
        lookback = settings.lookback_ms
        starts = np.searchsorted(group, np.arange(len(ids)), side="left")
        ends = np.searchsorted(group, np.arange(len(ids)), side="right")
        for code, machine in enumerate(ids):
            a, b = starts[code], ends[code]
            own_t = t[a:b]
            cut = own_t[-1] - lookback
            if done is not None:
                before = np.flatnonzero(own_t <= done)
                if len(before):
                    cut = min(cut, own_t[before[-1]])
            keep = np.arange(a, b)[own_t >= cut]
            tails[machine] = {f: (columns[f][keep].astype(np.int64).tolist() if f == "t"
                                  else _json(columns[f][keep])) for f in TAIL_FIELDS}
        state["tails"] = tails

    # --- API ------------------------------------------------------------------------------------

    def router(self) -> Any:
        """Routes under /api/v1/sites/{site_id}/traffic-awareness/."""
        from microservices.traffic_awareness.routes import router

        return router

    def card(self, site_id: str, read: Callable[[str, Mapping[str, Any]], pd.DataFrame],
             settings: BaseModel) -> Card | None:
        """Encounters today, critical ones, and the current queue length, for the site view."""
        from microservices.traffic_awareness.routes import card_data

        return card_data(site_id, read)
