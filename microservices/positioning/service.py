"""The positioning service: declaration, and ``process`` turning raw fixes into final, append-only results.

How ``process`` stays incremental and deterministic (microservices/sdk.py rules): per machine the
state keeps a short tail of raw samples (enough context for the cleaning windows) and a few
scalars (last final sample, last good fix, zone series, open speeding episode). A sample's cleaned
position depends only on samples within +-``lookahead_s`` of it, so a sample becomes *final* once
data ``lookahead_s`` newer than it has arrived; everything written is derived from final samples
only, and time and distance are summed in integer milliseconds and millimetres, so any split of
the same telemetry into batches gives the same totals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel

from microservices.motion import fuse
from microservices.positioning import detect
from microservices.positioning.settings import PositioningSettings
from microservices.sdk import Batch, Card, Kpi, Outputs, Service
from microservices.shifts import shift_columns
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import SiteConfig, ZoneType
from sitepulse.zones import ZoneIndex

ZONE_TYPES = [t.value for t in ZoneType]  # activity columns <type>_ms, plus none_ms outside every zone
STATE_VERSION = 1
RAW_FIELDS = ("t", "lon", "lat", "speed", "heading", "engine")

KPIS = (
    Kpi(
        name="idle_share",
        description="share of engine-on time spent idle (engine running, not moving)",
        unit="%",
        higher_is_better=False,
        daily_sql="""
            SELECT (minute AT TIME ZONE 'UTC')::date AS day,
                   100.0 * sum(idle_ms) / NULLIF(sum(idle_ms + moving_ms), 0) AS value
            FROM positioning.activity
            WHERE site_id = %(site_id)s AND minute >= %(start)s AND minute < %(end)s
            GROUP BY 1 HAVING sum(idle_ms + moving_ms) > 0 ORDER BY 1""",
    ),
    Kpi(
        name="restricted_entries_per_day",
        description="entries of machines into restricted zones (e.g. a blast area) per day",
        unit="entries/day",
        higher_is_better=False,
        daily_sql="""
            SELECT d.day, count(e.entered_at)::float AS value
            FROM (SELECT DISTINCT (minute AT TIME ZONE 'UTC')::date AS day FROM positioning.activity
                  WHERE site_id = %(site_id)s AND minute >= %(start)s AND minute < %(end)s) d
            LEFT JOIN positioning.zone_entries e
              ON e.site_id = %(site_id)s AND e.zone_type = 'restricted'
             AND (e.entered_at AT TIME ZONE 'UTC')::date = d.day
            GROUP BY d.day ORDER BY d.day""",
    ),
    Kpi(
        name="speeding_per_100km",
        description="speeding events per 100 km driven",
        unit="events/100 km",
        higher_is_better=False,
        daily_sql="""
            SELECT a.day, 100.0 * coalesce(s.n, 0) / (a.km) AS value
            FROM (SELECT (minute AT TIME ZONE 'UTC')::date AS day, sum(distance_mm) / 1e6 AS km
                  FROM positioning.activity
                  WHERE site_id = %(site_id)s AND minute >= %(start)s AND minute < %(end)s
                  GROUP BY 1) a
            LEFT JOIN (SELECT (started_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
                       FROM positioning.speeding WHERE site_id = %(site_id)s GROUP BY 1) s ON s.day = a.day
            WHERE a.km > 0 ORDER BY a.day""",
    ),
)


class SiteModel:
    """A site's zones and roads prepared once: zone index, limits, road centrelines in local metres."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.index = ZoneIndex(site)
        self.frame = site.frame
        zones = self.index.zones
        self.zone_ids = np.array([z.id for z in zones] + [None], dtype=object)
        self.zone_type_codes = np.array([ZONE_TYPES.index(z.type.value) for z in zones] + [len(ZONE_TYPES)])
        self.zone_limits = np.array([z.speed_limit_kmh or np.inf for z in zones], dtype=float)
        self.restricted = np.array([z.type == ZoneType.restricted for z in zones], dtype=bool)
        self.paths = [p for p in site.paths if p.speed_limit_kmh]
        lines = []
        for path in self.paths:
            lons, lats = zip(*path.points, strict=True)
            px, py = self.frame.to_xy(list(lons), list(lats))
            lines.append(shapely.LineString(np.c_[px, py]))
        self.lines = lines
        # per road: distance along it at each vertex, and the compass bearing of each segment
        self.vertex_s = [np.r_[0.0, np.cumsum(np.hypot(*np.diff(np.asarray(ln.coords), axis=0).T))] for ln in lines]
        self.bearings = [np.degrees(np.arctan2(*np.diff(np.asarray(ln.coords), axis=0).T)) for ln in lines]
        self.path_limits = np.array([p.speed_limit_kmh for p in self.paths], dtype=float)

    def limits(self, x: np.ndarray, y: np.ndarray, heading_deg: np.ndarray, inside: np.ndarray,
               corridor_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Applicable speed limit per position (inf: none) and the zone or road id that sets it.

        The road is the nearest centreline within the corridor that runs along the machine's heading
        (within 45 degrees either way); with no heading, or no aligned road, simply the nearest road in the
        corridor. Inside a zone with a posted limit the zone's (lowest) limit governs: where roads meet, as in
        a junction zone, which road a machine is on is ambiguous from its position.
        """
        n = len(x)
        limit = np.full(n, np.inf)
        source = np.full(n, None, dtype=object)
        known = np.isfinite(x) & np.isfinite(y)
        if self.lines and known.any():
            px, py, heading = x[known], y[known], heading_deg[known]
            points = shapely.points(px, py)
            distance = np.column_stack([shapely.distance(points, line) for line in self.lines])
            within = distance <= corridor_m
            aligned = np.ones_like(distance, dtype=bool)
            ambiguous = within.sum(axis=1) > 1  # only where roads meet does the heading decide
            for column, line in enumerate(self.lines):
                rows = np.flatnonzero(ambiguous & within[:, column])
                if len(rows) == 0:
                    continue
                along = shapely.line_locate_point(line, points[rows])
                segment = np.clip(np.searchsorted(self.vertex_s[column], along) - 1, 0,
                                  len(self.bearings[column]) - 1)
                road = self.bearings[column][segment]  # compass bearing of the road, degrees
                off = np.abs((heading[rows] - road + 90.0) % 180.0 - 90.0)  # either driving direction
                aligned[rows, column] = off <= 45.0
            has_heading = np.isfinite(heading)[:, None]
            preferred = within & np.where(has_heading & (within & aligned).any(axis=1, keepdims=True), aligned, True)
            cost = np.where(preferred, distance, np.inf)
            nearest = cost.argmin(axis=1)
            near = np.isfinite(cost[np.arange(len(nearest)), nearest])
            limit[known] = np.where(near, self.path_limits[nearest], np.inf)
            source[known] = np.where(near, np.array([p.id for p in self.paths], dtype=object)[nearest], None)
        if len(self.zone_limits):
            zone_limit = np.where(inside, self.zone_limits[None, :], np.inf)
            lowest = zone_limit.argmin(axis=1)
            value = zone_limit[np.arange(n), lowest]
            lower = np.isfinite(value)  # inside a zone with a posted limit, the zone's limit governs
            limit = np.where(lower, value, limit)
            source = np.where(lower, self.zone_ids[lowest], source)
        return limit, source


def _ms(ts: pd.Series) -> np.ndarray:
    """Epoch milliseconds of tz-aware timestamps."""
    return ((ts.dt.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(
        dtype=np.int64)


def _stamp(ms: Any) -> pd.Series | pd.Timestamp:
    return pd.to_datetime(ms, unit="ms", utc=True)


def _json_list(values: np.ndarray) -> list:
    """A float array as a JSON-safe list (NaN as None)."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


class Positioning(Service):
    """Positions cleaned of GNSS noise and jumps, zone visits, restricted entries, speeding and activity."""

    name = "positioning"
    version = "0.1.0"
    summary = ("Cleans GNSS positions; zone visits with dwell, restricted-zone entries and speeding per zone; "
               "distance, moving/idle/off time and time per zone type per machine and shift; the live map")
    consumes = ("lat", "lon", "speed_kmh", "heading_deg", "engine_on")
    tables = (
        "positioning.track",
        "positioning.activity",
        "positioning.zone_entries",
        "positioning.zone_visits",
        "positioning.speeding",
    )
    migrations = Path(__file__).parent / "migrations"
    Settings = PositioningSettings
    kpis = KPIS

    def __init__(self) -> None:
        self._models: dict[str, SiteModel] = {}

    # --- declaration helpers -------------------------------------------------------------------

    def site_model(self, site: SiteConfig) -> SiteModel:
        """The prepared zones of a site, cached by the site file's content."""
        key = hashlib.sha1(site.model_dump_json().encode()).hexdigest()
        model = self._models.get(key)
        if model is None:
            if len(self._models) > 64:
                self._models.clear()
            model = self._models[key] = SiteModel(site)
        return model

    # --- processing ----------------------------------------------------------------------------

    def process(self, batch: Batch, state: dict[str, Any], settings: BaseModel) -> tuple[Outputs, dict]:
        """Clean the new fixes with the carried tail and emit everything that became final."""
        if not isinstance(settings, PositioningSettings):
            settings = PositioningSettings.model_validate(settings.model_dump())
        out = Outputs()
        telemetry = batch.telemetry
        if telemetry.empty:
            return out, state
        state = dict(state) if state.get("v") == STATE_VERSION else {"v": STATE_VERSION, "machines": {}}
        machines: dict[str, Any] = dict(state["machines"])
        model = self.site_model(batch.site) if batch.site is not None and batch.site.zones else None
        frame = self._local_frame(batch.site, state, telemetry)

        rows = self._rows(telemetry, machines)
        if rows.empty:
            return out, state
        group = pd.factorize(rows["machine_id"], sort=True)[0]
        ids = np.array(sorted(rows["machine_id"].unique()), dtype=object)
        t = rows["t"].to_numpy(np.int64)
        x, y = frame.to_xy(rows["lon"].to_numpy(float), rows["lat"].to_numpy(float))
        cleaned = detect.clean_positions(
            group, t, x, y, jump_window_s=settings.jump_window_s, jump_tolerance_m=settings.jump_tolerance_m,
            jump_tolerance_s=settings.jump_tolerance_s, max_speed_kmh=settings.max_speed_kmh,
            smooth_window_s=settings.smooth_window_s)
        lookahead_ms = int(round(settings.lookahead_s * 1000))
        newest = pd.Series(t).groupby(group).transform("max").to_numpy()
        final_before = np.array([self._final_t(machines.get(m)) for m in ids], dtype=float)[group]
        final_now = (t <= newest - lookahead_ms) & (t > final_before)

        emitted = self._finalise(out, batch, model, frame, settings, machines, ids, group, t, rows, x, y,
                                 cleaned, final_now)
        # rows are sorted by machine and time, so each machine is one slice: [starts[code], ends[code])
        starts = np.searchsorted(group, np.arange(len(ids)), side="left")
        ends = np.searchsorted(group, np.arange(len(ids)), side="right")
        columns = {f: rows[f].to_numpy(np.int64 if f == "t" else float) for f in RAW_FIELDS}
        for code, machine in enumerate(ids):
            a, b = int(starts[code]), int(ends[code])
            cutoff = int(newest[a]) - 2 * lookahead_ms  # cleaning context for the samples still to finalise
            first = max(a, a + int(np.searchsorted(t[a:b], cutoff, side="left")) - 1)  # and the sample before it
            machines[machine] = {
                **machines.get(machine, {}),
                **emitted.get(machine, {}),
                "raw": {f: (columns[f][first:b].tolist() if f == "t" else _json_list(columns[f][first:b]))
                        for f in RAW_FIELDS},
            }
        state["machines"] = machines
        return out, state

    @staticmethod
    def _final_t(machine_state: dict[str, Any] | None) -> float:
        if not machine_state or machine_state.get("last") is None:
            return -np.inf
        return float(machine_state["last"]["t"])

    @staticmethod
    def _local_frame(site: SiteConfig | None, state: dict[str, Any], telemetry: pd.DataFrame) -> LocalFrame:
        """The site's frame; without a site file, a frame fixed at the first fix ever seen (kept in state)."""
        if site is not None and (site.zones or site.paths):
            return site.frame
        if "origin" not in state:
            fixes = telemetry.dropna(subset=["lat", "lon"])
            first = fixes.iloc[0] if not fixes.empty else {"lat": 0.0, "lon": 0.0}
            state["origin"] = [round(float(first["lat"]), 2), round(float(first["lon"]), 2)]
        return LocalFrame(*state["origin"])

    @staticmethod
    def _rows(telemetry: pd.DataFrame, machines: dict[str, Any]) -> pd.DataFrame:
        """The carried raw tails of the batch's machines plus the new samples, one per (machine, ts), sorted."""
        new = pd.DataFrame({
            "machine_id": telemetry["machine_id"].astype(str).to_numpy(),
            "t": _ms(telemetry["ts"]),
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
        return rows.reset_index(drop=True)

    def _finalise(self, out: Outputs, batch: Batch, model: SiteModel | None, frame: LocalFrame,
                  settings: PositioningSettings, machines: dict[str, Any], ids: np.ndarray, group: np.ndarray,
                  t: np.ndarray, rows: pd.DataFrame, raw_x: np.ndarray, raw_y: np.ndarray,
                  cleaned: detect.Cleaned, final_now: np.ndarray) -> dict[str, dict[str, Any]]:
        """Derive and write everything about the samples that became final; return per-machine state updates."""
        sel = np.flatnonzero(final_now)
        if len(sel) == 0:
            return {}
        g = group[sel]
        ts = t[sel]
        seeds = [((machines.get(m) or {}).get("good") or [np.nan, np.nan, np.nan]) for m in ids]
        seed = np.array(seeds, dtype=float)[g]
        x, y, carried = detect.carry_fixes(g, ts, cleaned.x[sel], cleaned.y[sel], cleaned.good[sel],
                                           seed[:, 0], seed[:, 1], seed[:, 2],
                                           int(round(settings.gap_carry_s * 1000)))
        # fused motion: reported speed/heading only where they agree with the (centred, lag-free) track
        fused = fuse(cleaned.vx[sel], cleaned.vy[sel], rows["speed"].to_numpy(float)[sel],
                     rows["heading"].to_numpy(float)[sel], settings.motion)
        # speed: the reported one where present (the centred track bends at long GNSS jumps and costs distance
        # accuracy); the track's where absent. Heading (road matching) comes from the fused motion.
        reported = rows["speed"].to_numpy(float)[sel]
        speed = np.where(np.isfinite(reported), reported, fused.speed_kmh)
        engine = rows["engine"].to_numpy(float)[sel]
        motion = detect.motion_state(speed, engine, settings.moving_kmh)
        known = np.isfinite(x) & np.isfinite(y)
        n_zones = len(model.index.zones) if model else 0
        inside = np.zeros((len(sel), n_zones), dtype=bool)
        grown = np.zeros((len(sel), n_zones), dtype=bool)
        if model and known.any():
            inside[known] = model.index.membership(x[known], y[known])
            grown[known] = model.index.membership(x[known], y[known], settings.border_margin_m)
        zone_index = np.where(inside.any(axis=1), inside.argmax(axis=1), n_zones) if n_zones else np.zeros(
            len(sel), dtype=np.int64)
        zone_type = model.zone_type_codes[zone_index] if model else np.full(len(sel), len(ZONE_TYPES))
        zone_type = np.where(known, zone_type, -1)  # -1: position unknown
        zone_id = model.zone_ids[zone_index] if model else np.full(len(sel), None, dtype=object)

        first = np.r_[True, g[1:] != g[:-1]]
        last = np.r_[g[1:] != g[:-1], True]
        updates: dict[str, dict[str, Any]] = {}
        self._write_track(out, settings, machines, ids, g, ts, x, y, carried, cleaned.jump[sel], rows.iloc[sel],
                          speed, motion, zone_id, frame, first)
        self._write_activity(out, batch.site, settings, machines, ids, g, ts, x, y, speed, motion, zone_type,
                             first)
        if model:
            self._write_zones(out, model, settings, machines, ids, g, ts, x, inside, grown, updates)
            heading = fused.course_deg
            moving = speed >= max(settings.moving_kmh, 1.0)
            heading = np.where(np.isfinite(heading) & moving, heading, np.nan)
            limit, source = model.limits(x, y, heading, inside, settings.path_corridor_m)
            self._write_speeding(out, settings, machines, ids, g, ts, speed, limit, source, updates)
        good = cleaned.good[sel]
        for row in np.flatnonzero(last):
            machine = ids[g[row]]
            update = updates.setdefault(machine, {})
            update["last"] = {"t": int(ts[row]), "speed": float(speed[row]) if np.isfinite(speed[row]) else None,
                              "motion": int(motion[row]), "zone_type": int(zone_type[row]),
                              "x": float(x[row]) if known[row] else None, "y": float(y[row]) if known[row] else None}
            own = np.flatnonzero((g == g[row]) & good)
            if len(own):
                k = own[-1]
                update["good"] = [int(ts[k]), float(x[k]), float(y[k])]
            update["bucket"] = int(ts[row] // int(settings.track_interval_s * 1000))
        return updates

    @staticmethod
    def _previous(machines: dict[str, Any], ids: np.ndarray, g: np.ndarray, first: np.ndarray,
                  values: np.ndarray, key: str, fill: Any = np.nan) -> np.ndarray:
        """Each final sample's predecessor value: the previous row, or the carried last final sample."""
        prev = np.r_[values[:1], values[:-1]].astype(object if values.dtype == object else float)
        for row in np.flatnonzero(first):
            last = (machines.get(ids[g[row]]) or {}).get("last")
            value = last.get(key) if last else None
            prev[row] = fill if value is None else value
        return prev

    def _write_track(self, out: Outputs, settings: PositioningSettings, machines: dict[str, Any], ids: np.ndarray,
                     g: np.ndarray, ts: np.ndarray, x: np.ndarray, y: np.ndarray, carried: np.ndarray,
                     jump: np.ndarray, raw: pd.DataFrame, speed: np.ndarray, motion: np.ndarray,
                     zone_id: np.ndarray, frame: LocalFrame, first: np.ndarray) -> None:
        """One cleaned position (with its raw fix) per machine per track interval."""
        interval = int(settings.track_interval_s * 1000)
        bucket = ts // interval
        previous = np.r_[-1, bucket[:-1]]
        for row in np.flatnonzero(first):
            carried_bucket = (machines.get(ids[g[row]]) or {}).get("bucket")
            previous[row] = -1 if carried_bucket is None else carried_bucket
        pick = np.flatnonzero(bucket != previous)
        if len(pick) == 0:
            return
        lon, lat = frame.to_lonlat(x[pick], y[pick])
        out.write("track", pd.DataFrame({
            "machine_id": ids[g[pick]],
            "ts": _stamp(ts[pick]),
            "lat": np.round(lat, 7),
            "lon": np.round(lon, 7),
            "raw_lat": raw["lat"].to_numpy(float)[pick],
            "raw_lon": raw["lon"].to_numpy(float)[pick],
            "x_m": np.round(x[pick], 2),
            "y_m": np.round(y[pick], 2),
            "speed_kmh": speed[pick],
            "heading_deg": raw["heading"].to_numpy(float)[pick],
            "state": detect.STATE_NAMES[motion[pick]],
            "zone": zone_id[pick],
            "jump": jump[pick],
            "carried": carried[pick],
        }))

    def _write_activity(self, out: Outputs, site: SiteConfig | None, settings: PositioningSettings,
                        machines: dict[str, Any], ids: np.ndarray, g: np.ndarray, ts: np.ndarray, x: np.ndarray,
                        y: np.ndarray, speed: np.ndarray, motion: np.ndarray, zone_type: np.ndarray,
                        first: np.ndarray) -> None:
        """Per machine and minute: distance, moving/idle/off time and time per zone type, as exact integers.

        Each interval between consecutive final samples takes the state of its first sample; its distance is
        the mean of the two reported speeds times its length (an odometer that GNSS noise and jumps cannot
        inflate), or the straight line between cleaned fixes where speed is not reported.
        """
        prev_t = self._previous(machines, ids, g, first, ts.astype(float), "t")
        prev_speed = self._previous(machines, ids, g, first, speed, "speed")
        prev_motion = self._previous(machines, ids, g, first, motion.astype(float), "motion")
        prev_zone = self._previous(machines, ids, g, first, zone_type.astype(float), "zone_type")
        prev_x = self._previous(machines, ids, g, first, x, "x")
        prev_y = self._previous(machines, ids, g, first, y, "y")
        has = np.isfinite(prev_t)
        if not has.any():
            return
        dt = np.where(has, ts - np.nan_to_num(prev_t), 0).astype(np.int64)
        counted = has & (dt <= int(settings.gap_carry_s * 1000)) & (dt > 0)
        with np.errstate(invalid="ignore"):
            by_speed = (prev_speed + speed) / 2 / 3.6 * dt  # km/h * ms -> mm
            by_line = np.hypot(x - prev_x, y - prev_y) * 1000
        distance = np.where(np.isfinite(by_speed) & counted, by_speed, np.where(np.isfinite(by_line), by_line, 0))
        distance = np.where(has, distance, 0)
        frame = pd.DataFrame({
            "machine_id": ids[g],
            "minute": (np.nan_to_num(prev_t).astype(np.int64) // 60_000) * 60_000,
            "distance_mm": np.rint(distance).astype(np.int64),
            "moving_ms": np.where(counted & (prev_motion == detect.MOVING), dt, 0),
            "idle_ms": np.where(counted & (prev_motion == detect.IDLE), dt, 0),
            "off_ms": np.where(counted & (prev_motion == detect.OFF), dt, 0),
            **{f"{kind}_ms": np.where(counted & (prev_zone == code), dt, 0) for code, kind in enumerate(ZONE_TYPES)},
            "none_ms": np.where(counted & (prev_zone == len(ZONE_TYPES)), dt, 0),
            "samples": counted.astype(np.int64),
        })[has]
        sums = frame.groupby(["machine_id", "minute"], sort=True).sum().reset_index()
        shift_date, shift = shift_columns(sums["minute"].to_numpy(np.int64), site)
        sums.insert(2, "shift_date", shift_date)
        sums.insert(3, "shift", shift)
        sums["minute"] = _stamp(sums["minute"].to_numpy(np.int64))
        out.write("activity", sums)

    def _write_zones(self, out: Outputs, model: SiteModel, settings: PositioningSettings,
                     machines: dict[str, Any], ids: np.ndarray, g: np.ndarray, ts: np.ndarray, x: np.ndarray,
                     inside: np.ndarray, grown: np.ndarray, updates: dict[str, dict[str, Any]]) -> None:
        """Zone entries as soon as confirmed, zone visits once their exit is confirmed; restricted entries alert."""
        kind = np.where(inside, detect.IN, np.where(grown, detect.BAND, detect.OUT)).astype(np.int8)
        kind[~np.isfinite(x)] = detect.BAND  # position unknown: hold the current state
        dwell_out = int(round(settings.min_dwell_s * 1000))
        entries, visits = [], []
        zones = model.index.zones
        for code, machine in enumerate(ids):
            own = np.flatnonzero(g == code)
            if len(own) == 0:
                continue
            carried = dict((machines.get(machine) or {}).get("zones") or {})
            near = set(np.flatnonzero((kind[own] != detect.OUT).any(axis=0)).tolist())
            series_state = {}
            for column, zone in enumerate(zones):
                if column not in near and zone.id not in carried:
                    continue
                dwell_in = settings.restricted_min_dwell_s if model.restricted[column] else settings.min_dwell_s
                done, entered, new_state = detect.zone_series(ts[own], kind[own, column], carried.get(zone.id),
                                                              int(round(dwell_in * 1000)), dwell_out)
                for start in entered:
                    entries.append((machine, zone, start))
                for start, end in done:
                    visits.append((machine, zone, start, end))
                if new_state is not None:
                    series_state[zone.id] = new_state
            updates.setdefault(machine, {})["zones"] = series_state
        if entries:
            out.write("zone_entries", pd.DataFrame({
                "machine_id": [e[0] for e in entries],
                "zone": [e[1].id for e in entries],
                "zone_type": [e[1].type.value for e in entries],
                "entered_at": _stamp(np.array([e[2] for e in entries], dtype=np.int64)),
            }))
            for machine, zone, start in entries:
                if zone.type == ZoneType.restricted:
                    at = _stamp(start).to_pydatetime()
                    out.alert(f"restricted-entry:{machine}:{zone.id}:{at.isoformat()}",
                              f"{machine} entered restricted zone {zone.name or zone.id} at {at:%H:%M:%S} UTC",
                              level="critical", at=at, machine_id=machine,
                              data={"zone": zone.id, "entered_at": at.isoformat()})
        if visits:
            starts = np.array([v[2] for v in visits], dtype=np.int64)
            ends = np.array([v[3] for v in visits], dtype=np.int64)
            out.write("zone_visits", pd.DataFrame({
                "machine_id": [v[0] for v in visits],
                "zone": [v[1].id for v in visits],
                "zone_type": [v[1].type.value for v in visits],
                "entered_at": _stamp(starts),
                "left_at": _stamp(ends),
                "dwell_s": (ends - starts) / 1000.0,
            }))

    def _write_speeding(self, out: Outputs, settings: PositioningSettings, machines: dict[str, Any],
                        ids: np.ndarray, g: np.ndarray, ts: np.ndarray, speed: np.ndarray, limit: np.ndarray,
                        source: np.ndarray, updates: dict[str, dict[str, Any]]) -> None:
        """Speeding episodes per machine against the lowest applicable zone or road limit; each alerts."""
        over = np.nan_to_num(speed, nan=0.0) > limit + settings.speeding_tolerance_kmh
        episodes = []
        for code, machine in enumerate(ids):
            own = np.flatnonzero(g == code)
            carried = (machines.get(machine) or {}).get("speeding")
            if len(own) == 0 or (carried is None and not over[own].any()):
                updates.setdefault(machine, {})["speeding"] = carried
                continue
            found, open_ = detect.speeding_series(ts[own], over[own], speed[own], limit[own], source[own], carried,
                                                  int(round(settings.speeding_min_s * 1000)))
            episodes += [(machine, e) for e in found]
            updates.setdefault(machine, {})["speeding"] = open_
        if not episodes:
            return
        out.write("speeding", pd.DataFrame({
            "machine_id": [m for m, _ in episodes],
            "zone": [e["source"] for _, e in episodes],
            "started_at": _stamp(np.array([e["start"] for _, e in episodes], dtype=np.int64)),
            "ended_at": _stamp(np.array([e["end"] for _, e in episodes], dtype=np.int64)),
            "duration_s": [(e["end"] - e["start"]) / 1000.0 for _, e in episodes],
            "max_speed_kmh": [round(e["max"], 1) for _, e in episodes],
            "limit_kmh": [e["limit"] for _, e in episodes],
        }))
        for machine, e in episodes:
            at = _stamp(e["start"]).to_pydatetime()
            out.alert(f"speeding:{machine}:{at.isoformat()}",
                      f"{machine} drove {e['max']:.0f} km/h where the limit is {e['limit']:.0f} km/h "
                      f"({e['source']}) for {(e['end'] - e['start']) / 1000:.0f} s",
                      level="warning", at=at, machine_id=machine,
                      data={"zone": e["source"], "max_speed_kmh": round(e["max"], 1), "limit_kmh": e["limit"],
                            "ended_at": _stamp(e["end"]).isoformat()})

    # --- API ------------------------------------------------------------------------------------

    def router(self) -> Any:
        """Routes under /api/v1/sites/{site_id}/positioning/."""
        from microservices.positioning.routes import router

        return router

    def card(self, site_id: str, read: Callable[[str, Mapping[str, Any]], pd.DataFrame],
             settings: BaseModel) -> Card | None:
        """The live map for the site view: the site's zones and each machine's last known position and state."""
        from microservices.positioning.routes import live_map

        data = live_map(site_id, read)
        states = pd.Series([m["state"] for m in data["machines"]], dtype=object)
        metrics = [{"label": f"machines {s}", "value": int((states == s).sum()), "unit": ""}
                   for s in ("moving", "idle", "off")]
        return Card(title="Positioning", metrics=metrics, data=data, link="positions")
