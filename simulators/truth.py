"""Ground truth written beside the telemetry, so each micro-service can score itself.

Cycles and queues come straight from the machines' state machines; zone visits, restricted
entries, speeding and close encounters are derived from TRUE positions and speeds in blocks
of ticks (vectorised with numpy/shapely), carrying open episodes across blocks. Times are
RFC 3339 UTC in true (not device) time. The record format is documented in simulators/README.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
import shapely

from sitepulse.geo import time_to_collision
from sitepulse.sitefile import SiteConfig, ZoneType


def iso_ms(epoch_s: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2026-01-05T06:00:01.000Z."""
    ms = int(round(epoch_s * 1000))
    sec, rem = divmod(ms, 1000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem:03d}Z"


@dataclass(frozen=True)
class TruthSettings:
    """Definitions the truth uses; the defaults are SitePulse's (docs/DOMAIN.md) where it has one."""

    zone_min_dwell_s: float = 5.0  # docs/DOMAIN.md: a zone visit needs a minimum dwell of 5 s
    warning_distance_m: float = 20.0  # docs/DOMAIN.md: warning within 20 m ...
    warning_ttc_s: float = 8.0  # ... with time to collision under 8 s
    critical_distance_m: float = 10.0  # critical within 10 m ...
    critical_ttc_s: float = 4.0  # ... or time to collision under 4 s
    collision_radius_m: float = 6.0  # TTC: time until centres come this close at constant velocity
    moving_min_kmh: float = 2.0  # "moving" for encounters
    encounter_merge_s: float = 3.0  # episodes closer together than this are one encounter
    speeding_tolerance_kmh: float = 0.5
    speeding_min_s: float = 3.0
    queue_min_s: float = 5.0
    # standing episodes (true speed under 0.1 m/s) at least this long become ``standing`` records; None: none
    # (opt-in: they score what a service says about standing machines, e.g. proximity between two of them)
    standing_min_s: float | None = None


STILL_MS = 0.1  # true speed below which a machine stands


class TruthRecorder:
    """Collects true machine states each tick and turns them into ground-truth records."""

    BLOCK = 600

    def __init__(self, site: SiteConfig, machine_ids: list[str], start_epoch: float,
                 path_limits: dict[str, float | None], dt: float = 1.0,
                 settings: TruthSettings | None = None) -> None:
        self.site = site
        self.dt = dt
        self.ids = machine_ids
        self.start = start_epoch
        self.cfg = settings or TruthSettings()
        self.records: list[dict] = []
        self.zones = list(site.zones)
        self.polys = [site.local_polygon(z) for z in self.zones]
        for p in self.polys:
            shapely.prepare(p)
        self.path_ids = sorted(path_limits)
        self.path_limit = np.array([path_limits[p] or np.inf for p in self.path_ids] + [np.inf])
        m = len(machine_ids)
        self.m = m
        self.ia, self.ja = np.triu_indices(m, k=1)
        self._alloc()
        self.inside_prev = np.zeros((len(self.zones), m), dtype=bool)
        self.visit_open: dict[tuple[int, int], float] = {}
        self.speed_open: dict[int, dict] = {}
        self.enc_open: dict[int, dict] = {}
        self.still_prev = np.zeros(m, dtype=bool)
        self.still_from = np.full(m, np.nan)
        self.last_t = 0.0

    def _alloc(self) -> None:
        n, m = self.BLOCK, self.m
        self.tb = np.zeros(n)
        self.xb = np.zeros((n, m))
        self.yb = np.zeros((n, m))
        self.vb = np.zeros((n, m))
        self.hb = np.zeros((n, m))
        self.pb = np.full((n, m), -1, dtype=np.int64)
        self.qb = np.full((n, m), -1, dtype=np.int64)
        self.n = 0

    def iso(self, t: float | None) -> str | None:
        return None if t is None else iso_ms(self.start + t)

    def add(self, record: dict) -> None:
        """A record the engine knows directly (cycle, queue, dropout...)."""
        self.records.append(record)

    def tick(self, t: float, x: np.ndarray, y: np.ndarray, speed: np.ndarray, heading: np.ndarray,
             partner: np.ndarray, path_idx: np.ndarray) -> None:
        """True state of every machine at one tick (speed m/s, heading degrees)."""
        i = self.n
        self.tb[i] = t
        self.xb[i], self.yb[i], self.vb[i], self.hb[i] = x, y, speed, heading
        self.pb[i], self.qb[i] = partner, path_idx
        self.n += 1
        self.last_t = t
        if self.n == self.BLOCK:
            self._process()

    # ---- block processing ---------------------------------------------------------------
    def _process(self) -> None:
        n = self.n
        if n == 0:
            return
        t = self.tb[:n]
        x, y, v, h = self.xb[:n], self.yb[:n], self.vb[:n], self.hb[:n]
        inside_all = []
        for zi, (zone, poly) in enumerate(zip(self.zones, self.polys, strict=True)):
            inside = shapely.contains_xy(poly, x.ravel(), y.ravel()).reshape(n, self.m)
            inside_all.append(inside)
            full = np.vstack([self.inside_prev[zi][None, :], inside])
            for r, mi in np.argwhere(full[1:] != full[:-1]):
                if inside[r, mi]:
                    self.visit_open[(zi, int(mi))] = float(t[r])
                else:
                    entered = self.visit_open.pop((zi, int(mi)), None)
                    self._close_visit(zone, int(mi), entered, float(t[r]))
            self.inside_prev[zi] = inside[-1]
        self._speeding(t, v, inside_all)
        self._encounters(t, x, y, v, h, inside_all)
        if self.cfg.standing_min_s is not None:
            self._standing(t, v)
        self._alloc()

    def _standing(self, t: np.ndarray, v: np.ndarray) -> None:
        still = v < STILL_MS
        full = np.vstack([self.still_prev[None, :], still])
        for r, mi in np.argwhere(full[1:] != full[:-1]):
            if still[r, mi]:
                self.still_from[mi] = t[r]
            else:
                self._close_standing(int(mi), float(t[r]))
        self.still_prev = still[-1].copy()

    def _close_standing(self, mi: int, until: float) -> None:
        since = float(self.still_from[mi])
        self.still_from[mi] = np.nan
        if np.isfinite(since) and until - since >= (self.cfg.standing_min_s or 0.0):
            self.records.append({"type": "standing", "machine_id": self.ids[mi], "from": self.iso(since),
                                 "to": self.iso(until), "_t": since})

    def _close_visit(self, zone, mi: int, entered: float | None, left: float | None) -> None:
        if entered is None:
            return
        mid = self.ids[mi]
        if zone.type == ZoneType.restricted:
            self.records.append({"type": "restricted_entry", "machine_id": mid, "zone": zone.id,
                                 "entered_at": self.iso(entered), "left_at": self.iso(left), "_t": entered})
        if left is None or left - entered >= self.cfg.zone_min_dwell_s:
            self.records.append({"type": "zone_visit", "machine_id": mid, "zone": zone.id,
                                 "zone_type": str(zone.type), "entered_at": self.iso(entered),
                                 "left_at": self.iso(left), "_t": entered})

    def _speeding(self, t, v, inside_all) -> None:
        n = len(t)
        limit = self.path_limit[self.qb[:n]]
        source = np.where(np.isfinite(limit), self.qb[:n], -1).astype(np.int64)
        for zi, zone in enumerate(self.zones):
            if zone.speed_limit_kmh:
                lower = inside_all[zi] & (zone.speed_limit_kmh < limit)
                limit = np.where(lower, zone.speed_limit_kmh, limit)
                source = np.where(lower, 1000 + zi, source)
        kmh = v * 3.6
        over = kmh > limit + self.cfg.speeding_tolerance_kmh
        for mi in range(self.m):
            col = over[:, mi]
            ep = self.speed_open.get(mi)
            if not col.any() and ep is None:
                continue
            for r in range(n):
                if col[r]:
                    if ep is None:
                        ep = {"start": float(t[r]), "max": 0.0, "limit": math.inf, "src": int(source[r, mi])}
                    ep["max"] = max(ep["max"], float(kmh[r, mi]))
                    ep["limit"] = min(ep["limit"], float(limit[r, mi]))
                    ep["end"] = float(t[r])
                elif ep is not None:
                    self._close_speeding(mi, ep, float(t[r]))
                    ep = None
            if ep is None:
                self.speed_open.pop(mi, None)
            else:
                self.speed_open[mi] = ep

    def _close_speeding(self, mi: int, ep: dict, ended: float) -> None:
        if ended - ep["start"] < self.cfg.speeding_min_s:
            return
        src = ep["src"]
        name = self.zones[src - 1000].id if src >= 1000 else (self.path_ids[src] if src >= 0 else "")
        self.records.append({"type": "speeding", "machine_id": self.ids[mi], "zone": name,
                             "started_at": self.iso(ep["start"]), "ended_at": self.iso(ended),
                             "max_speed_kmh": round(ep["max"], 1), "limit_kmh": ep["limit"],
                             "_t": ep["start"]})

    def _encounters(self, t, x, y, v, h, inside_all) -> None:
        c = self.cfg
        ia, ja = self.ia, self.ja
        if len(ia) == 0:
            return
        dx, dy = x[:, ja] - x[:, ia], y[:, ja] - y[:, ia]
        d = np.hypot(dx, dy)
        moving = v * 3.6 >= c.moving_min_kmh
        cand = (d < c.warning_distance_m) & moving[:, ia] & moving[:, ja]
        p = self.pb[:len(t)]
        cand &= (p[:, ia] != ja[None, :]) & (p[:, ja] != ia[None, :])
        for zi, zone in enumerate(self.zones):
            if zone.type == ZoneType.parking:
                cand &= ~(inside_all[zi][:, ia] & inside_all[zi][:, ja])
        rows, pairs = np.nonzero(cand)
        if len(rows):
            hr = np.radians(h)
            vx, vy = v * np.sin(hr), v * np.cos(hr)
            rvx = vx[rows, ja[pairs]] - vx[rows, ia[pairs]]
            rvy = vy[rows, ja[pairs]] - vy[rows, ia[pairs]]
            ttc = time_to_collision(dx[rows, pairs], dy[rows, pairs], rvx, rvy, c.collision_radius_m)
            dd = d[rows, pairs]
            crit = (dd < c.critical_distance_m) | (ttc < c.critical_ttc_s)
            warn = ttc < c.warning_ttc_s
            for r, pi, di, ti, cr, wa in zip(rows, pairs, dd, ttc, crit, warn, strict=True):
                if not (cr or wa):
                    continue
                tt = float(t[r])
                ep = self.enc_open.get(int(pi))
                if ep is not None and tt - ep["last"] > c.encounter_merge_s:
                    self._close_encounter(int(pi), ep)
                    ep = None
                if ep is None:
                    ep = {"start": tt, "last": tt, "min_d": math.inf, "at": tt, "min_ttc": math.inf,
                          "level": 1}
                    self.enc_open[int(pi)] = ep
                ep["last"] = tt
                if di < ep["min_d"]:
                    ep["min_d"], ep["at"] = float(di), tt
                ep["min_ttc"] = min(ep["min_ttc"], float(ti))
                ep["level"] = max(ep["level"], 2 if cr else 1)
        end = float(t[-1])
        for pi in sorted(self.enc_open):
            if end - self.enc_open[pi]["last"] > c.encounter_merge_s:
                self._close_encounter(pi, self.enc_open[pi])
        self.enc_open = {k: e for k, e in self.enc_open.items() if end - e["last"] <= c.encounter_merge_s}

    def _close_encounter(self, pi: int, ep: dict) -> None:
        a, b = sorted((self.ids[self.ia[pi]], self.ids[self.ja[pi]]))
        self.records.append({
            "type": "encounter", "machine_a": a, "machine_b": b, "at": self.iso(ep["at"]),
            "started_at": self.iso(ep["start"]), "ended_at": self.iso(ep["last"]),
            "min_distance_m": round(ep["min_d"], 2),
            "min_ttc_s": None if math.isinf(ep["min_ttc"]) else round(ep["min_ttc"], 2),
            "level": "critical" if ep["level"] == 2 else "warning", "_t": ep["at"]})

    def finish(self) -> None:
        """Process the last block and close every open episode (zone visits stay open: left_at null)."""
        self._process()
        for (zi, mi) in sorted(self.visit_open):
            self._close_visit(self.zones[zi], mi, self.visit_open[(zi, mi)], None)
        self.visit_open = {}
        for mi in sorted(self.speed_open):
            ep = self.speed_open[mi]
            self._close_speeding(mi, ep, ep["end"] + self.dt)
        self.speed_open = {}
        for pi in sorted(self.enc_open):
            self._close_encounter(pi, self.enc_open[pi])
        self.enc_open = {}
        if self.cfg.standing_min_s is not None:
            for mi in np.flatnonzero(self.still_prev):
                self._close_standing(int(mi), self.last_t)


TYPE_ORDER = {"site": 0, "machine": 1}


def sorted_records(head: list[dict], events: list[dict], tail: list[dict]) -> list[dict]:
    """Header records, then events by true time (ties by type and machine), then fault and summary records."""
    def key(r: dict) -> tuple:
        return (r.get("_t", 0.0), r["type"], str(r.get("machine_id", r.get("machine_a", ""))),
                str(r.get("machine_b", "")), str(r.get("zone", "")))
    ordered = sorted(events, key=key)
    return head + [{k: v for k, v in r.items() if k != "_t"} for r in ordered] + tail


def dumps_records(records: list[dict]) -> bytes:
    """JSON lines, one record per line."""
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def settings_dict(settings: TruthSettings) -> dict:
    return asdict(settings)
