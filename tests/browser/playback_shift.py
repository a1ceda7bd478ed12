"""A stored shift for playback tests and benchmarks/playback.py: the tables the playback route reads, filled as the
services would leave them after a shift, without running the fleet for hours.

Each machine drives one of the site's haul roads end to end and back at haul speed (one track point per 5 s, as
positioning stores it), standing a few minutes at each end (a load and a dump); at each arrival a zone entry is
stored, each round trip a cycle, every 20 minutes a close encounter with the next machine, and each hour an alarm.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np
import psycopg
import uvicorn

from microservices.alerts import store_alerts
from microservices.sdk import Alert
from registry.api.app import create_app
from sitepulse.embedded.ports import free_port
from sitepulse.settings import load_settings
from sitepulse.sitefile import SiteConfig

STEP_S = 5
SPEED_KMH = 28.0
STAND_S = 180


@dataclass
class Seeded:
    machines: list[str]
    track_rows: int
    events: int


def _route(site: SiteConfig, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Local x, y (m) of a haul road's centreline, densified, there and back."""
    path = site.paths[index % len(site.paths)]
    lons, lats = zip(*path.points, strict=True)
    x, y = site.frame.to_xy(list(lons), list(lats))
    x, y = np.asarray(x, float), np.asarray(y, float)
    return np.r_[x, x[::-1]], np.r_[y, y[::-1]]


def _positions(x: np.ndarray, y: np.ndarray, seconds: np.ndarray, offset_s: float) -> tuple[np.ndarray, ...]:
    """Where a machine driving the route in a loop (standing at both ends) is at each second; and its state."""
    leg = np.hypot(np.diff(x), np.diff(y))
    half = len(x) // 2
    pause = np.zeros(len(leg))
    pause[half - 1] = STAND_S  # at the far end (the load)
    drive_s = np.maximum(leg, 1e-6) / (SPEED_KMH / 3.6)  # the turnaround repeats a point: a zero leg
    lap = drive_s.sum() + pause.sum() + STAND_S  # and at the start (the dump)
    t = (seconds + offset_s) % lap
    starts = np.r_[STAND_S, STAND_S + np.cumsum(drive_s + pause)[:-1]]
    i = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(leg) - 1)
    into = np.clip((t - starts[i]) / drive_s[i], 0, 1)
    standing = (t < STAND_S) | ((t - starts[i]) > drive_s[i])
    px = x[i] + (x[i + 1] - x[i]) * into
    py = y[i] + (y[i + 1] - y[i]) * into
    px = np.where(t < STAND_S, x[0], px)
    py = np.where(t < STAND_S, y[0], py)
    lap_number = np.floor((seconds + offset_s) / lap).astype(np.int64)
    return px, py, np.where(standing, "idle", "moving"), lap_number, np.where(standing, 0.0, SPEED_KMH)


def seed_shift(conn: psycopg.Connection, site_id: str, site: SiteConfig, start: datetime, hours: float,
               machines: int) -> Seeded:
    """Store ``hours`` of track and events for ``machines`` machines from ``start`` (UTC)."""
    seconds = np.arange(0, int(hours * 3600), STEP_S, dtype=float)
    stamps = [start + timedelta(seconds=float(s)) for s in seconds]
    declared = [m.id for m in site.machines if m.kind.value == "hauler"]
    ids = [declared[i] if i < len(declared) else f"HB-{i + 1:03d}" for i in range(machines)]
    zones = {z.type.value: z for z in site.zones}
    events = 0
    with conn.transaction():
        conn.execute("DELETE FROM positioning.track WHERE site_id = %s", (site_id,))
        for table in ("positioning.zone_entries", "weight_loading.cycles", "traffic_awareness.encounters"):
            conn.execute(f"DELETE FROM {table} WHERE site_id = %s", (site_id,))  # noqa: S608 (constant names)
        conn.execute("DELETE FROM service_alerts WHERE site_id = %s", (site_id,))
        alerts = []
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO machines (site_id, machine_id, kind) VALUES (%s, %s, 'hauler') "
                            "ON CONFLICT DO NOTHING", [(site_id, machine) for machine in ids])
        with conn.cursor().copy(
                "COPY positioning.track (site_id, run_seq, machine_id, ts, lat, lon, raw_lat, raw_lon, x_m, y_m, "
                "speed_kmh, heading_deg, state, zone, jump, carried) FROM STDIN") as copy:
            for n, machine in enumerate(ids):
                x, y = _route(site, n)
                px, py, state, lap, speed = _positions(x, y, seconds, offset_s=n * 97.0)
                lon, lat = site.frame.to_lonlat(px, py)
                for k in range(len(seconds)):
                    copy.write_row((site_id, 1, machine, stamps[k], round(float(lat[k]), 7), round(float(lon[k]), 7),
                                    float(lat[k]), float(lon[k]), float(px[k]), float(py[k]), float(speed[k]), None,
                                    str(state[k]), None, False, False))
        for n, machine in enumerate(ids):
            x, y = _route(site, n)
            px, py, state, lap, _ = _positions(x, y, seconds, offset_s=n * 97.0)
            lon, lat = site.frame.to_lonlat(px, py)
            arrivals = np.flatnonzero((state[1:] == "idle") & (state[:-1] == "moving")) + 1
            for j, k in enumerate(arrivals):  # at the far end (a load) and back at the start (a dump) in turn
                zone = zones.get("load") if j % 2 == 0 else zones.get("dump")
                if zone is None:
                    continue
                conn.execute("INSERT INTO positioning.zone_entries VALUES (%s, 1, %s, %s, %s, %s)",
                             (site_id, machine, zone.id, zone.type.value, stamps[k]))
                events += 1
            laps = np.flatnonzero(np.diff(lap) > 0) + 1
            for k in laps[laps >= 200]:  # loaded about 17 minutes before the dump
                loaded = stamps[k - 200]
                conn.execute(
                    "INSERT INTO weight_loading.cycles (site_id, run_seq, machine_id, load_start, loaded_at, "
                    "haul_start, dump_start, dumped_at, payload_kg, rated_payload_kg, payload_pct, band, passes, "
                    "load_lat, load_lon, dump_lat, dump_lon) VALUES (%s, 1, %s, %s, %s, %s, %s, %s, %s, 28000, %s, "
                    "%s, 4, %s, %s, %s, %s)",
                    (site_id, machine, loaded, loaded, loaded, stamps[k], stamps[k], 26_000 + 300 * (n % 9),
                     (26_000 + 300 * (n % 9)) / 280, "target", float(lat[k]), float(lon[k]), float(lat[k]),
                     float(lon[k])))
                events += 2
            for k in range(int(600 / STEP_S) + n * 7, len(seconds), int(1200 / STEP_S)):
                other = ids[(n + 1) % len(ids)]
                if other == machine:
                    break
                a, b = sorted((machine, other))
                conn.execute(
                    "INSERT INTO traffic_awareness.encounters (site_id, run_seq, machine_a, machine_b, started_at, "
                    "ended_at, at, min_distance_m, min_ttc_s, max_closing_kmh, level, lat, lon, zone) "
                    "VALUES (%s, 1, %s, %s, %s, %s, %s, %s, NULL, 30, %s, %s, %s, NULL)",
                    (site_id, a, b, stamps[k], stamps[k], stamps[k], 12.0 + n % 5,
                     "critical" if n % 5 == 0 else "warning", float(lat[k]), float(lon[k])))
                events += 1
            for k in range(int(1800 / STEP_S) + n, len(seconds), int(3600 / STEP_S)):
                alerts.append(Alert(f"bench:{machine}:{k}", f"{machine} drove {SPEED_KMH + 10:.0f} km/h where the "
                                    "limit is 30 km/h", at=stamps[k], machine_id=machine, level="warning"))
        store_alerts(conn, site_id, "positioning", alerts)
        events += len(alerts)
    return Seeded(ids, len(ids) * len(seconds), events)


def shift_period(now: datetime, hours: float) -> tuple[datetime, datetime]:
    """A period of ``hours`` ending at the last whole minute before ``now``."""
    end = now.replace(second=0, microsecond=0)
    return end - timedelta(seconds=math.ceil(hours * 3600)), end


def serve_api(database_url: str, services: dict[str, Any], admin_token: str) -> tuple[str, uvicorn.Server]:
    """The API on a loopback port in a thread (no broker: the playback and zone pages need none); set
    ``should_exit`` on the server to stop it."""
    app = create_app(database_url, "mqtt://127.0.0.1:1", services=services,
                     settings=load_settings(admin_token=admin_token), track_usage=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{server.config.port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return base, server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not come up in 60 s")
