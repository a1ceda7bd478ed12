"""Zone visits, distance and idle time on every receiver class, from RTK to standalone with metres of white jitter.

Each test drives one truck by hand past a zone edge and adds a receiver's error: a slow drift (first-order
Gauss-Markov, the receiver class's figures in simulators/sensors.py) plus white noise per axis. Truth is the
true track, so each assertion could fail on a noisy receiver.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.pipeline import run_in_chunks
from microservices.positioning import Positioning
from simulators.sensors import RECEIVERS
from sitepulse.sitefile import parse_site

START = pd.Timestamp("2026-03-02T06:00:00Z")
SITE = parse_site("""
name: edge
zones:
  - {id: pit, type: load, polygon: [[18.0, 59.0], [18.002, 59.0], [18.002, 59.001], [18.0, 59.001]]}
""", source="edge.yaml")
PIT = SITE.local_polygon(SITE.zones[0])
MINX, MINY, MAXX, MAXY = PIT.bounds


def receiver_error(n: int, hz: float, receiver: str, rng: np.random.Generator, white_m: float | None = None
                   ) -> np.ndarray:
    """n x 2 metres of a receiver class's error: its slow drift plus white noise per axis."""
    spec = RECEIVERS[receiver]
    sigma, tau, white = spec["gnss_sigma_m"], spec["gnss_tau_s"], white_m or spec["gnss_white_m"]
    phi = np.exp(-1.0 / hz / tau)
    shocks = rng.normal(0.0, sigma * np.sqrt(1 - phi ** 2), (n, 2))
    drift = np.empty((n, 2))
    drift[0] = rng.normal(0.0, sigma, 2)
    for k in range(1, n):
        drift[k] = phi * drift[k - 1] + shocks[k]
    return drift + rng.normal(0.0, white, (n, 2))


def telemetry(x: np.ndarray, y: np.ndarray, speed_kmh: np.ndarray, hz: float, receiver: str, seed: int,
              white_m: float | None = None, report_speed: bool = True) -> pd.DataFrame:
    """One truck's telemetry along a true track (local metres) as its receiver reports it."""
    n = len(x)
    error = receiver_error(n, hz, receiver, np.random.default_rng(seed), white_m)
    lon, lat = SITE.frame.to_lonlat(x + error[:, 0], y + error[:, 1])
    return pd.DataFrame({"site_id": "s", "machine_id": "H1", "ts": START + pd.to_timedelta(np.arange(n) / hz, "s"),
                         "seq": np.arange(n), "lat": lat, "lon": lon,
                         "speed_kmh": speed_kmh if report_speed else np.nan, "heading_deg": np.nan,
                         "engine_on": True})


def stop_at_edge(offset_m: float, hz: float, stand_s: float = 1200.0, v: float = 8.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drive east towards the pit's west edge, stand ``offset_m`` from it (positive: inside) for ``stand_s``,
    drive back west: the truck queueing at a loading area's edge."""
    stop = MINX + offset_m
    approach = np.arange(stop - 300.0, stop, v / hz)
    standing = np.full(int(stand_s * hz), stop)
    away = stop - np.arange(1, int(300.0 / (v / hz))) * v / hz
    x = np.r_[approach, standing, away]
    speed = np.r_[np.full(len(approach), v), np.zeros(len(standing)), np.full(len(away), v)] * 3.6
    return x, np.full(len(x), (MINY + MAXY) / 2), speed


def visits(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return tables.get("zone_visits", pd.DataFrame(columns=["entered_at", "left_at"]))


@pytest.mark.parametrize("hz", [1.0, 0.5, 10.0])
@pytest.mark.parametrize("offset_m", [-2.0, 2.0])
def test_a_truck_standing_at_a_zone_edge_on_a_standalone_receiver_enters_at_most_once(offset_m: float,
                                                                                        hz: float) -> None:
    """2.5 m white jitter on top of 1.5 m drift: before, a truck standing 2 m outside the edge for 20 min made
    4-10 visits of it; standing 2 m inside, one visit dated at its real crossing."""
    x, y, speed = stop_at_edge(offset_m, hz)
    crossing = START + pd.Timedelta(seconds=float(np.argmax(x >= MINX)) / hz)
    for seed in range(3):
        tables = run_in_chunks(Positioning(), telemetry(x, y, speed, hz, "standalone", seed, white_m=2.5),
                               site=SITE, chunk="10min")
        found = visits(tables)
        if offset_m < 0:
            assert found.empty, (seed, found)
        else:
            assert len(found) == 1, (seed, found)
            assert abs(pd.Timestamp(found["entered_at"].iloc[0]) - crossing) <= pd.Timedelta(seconds=10), seed


def along_edge(depth_m: float, hz: float, v: float = 5.0, stand_s: float = 300.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stand ``stand_s`` west of the pit (the receiver's noise is learnt while standing), then drive north
    ``depth_m`` inside the pit's west edge (negative: outside it) along its whole side, and on out of it."""
    x0 = MINX + depth_m
    wait = np.full(int(stand_s * hz), MINY - 80.0)
    drive = np.arange(MINY - 80.0, MAXY + 80.0, v / hz)
    y = np.r_[wait, drive]
    speed = np.r_[np.zeros(len(wait)), np.full(len(drive), v * 3.6)]
    return np.full(len(y), x0), y, speed


@pytest.mark.parametrize(("depth_m", "expected"), [(1.0, 1), (-2.0, 0)])
def test_an_rtk_machine_keeps_sharp_zone_edges(depth_m: float, expected: int) -> None:
    """Driving 1 m inside the edge for 22 s is a visit and 2 m outside is none, as the true track says: RTK noise
    (2 cm) is estimated online and the hysteresis shrinks to it (with the standalone prior it would be metres)."""
    x, y, speed = along_edge(depth_m, 1.0)
    for seed in range(3):
        tables = run_in_chunks(Positioning(), telemetry(x, y, speed, 1.0, "rtk", seed), site=SITE, chunk="10min")
        found = visits(tables)
        assert len(found) == expected, (seed, found)
        if expected:
            entered = START + pd.Timedelta(seconds=float(np.argmax(y >= MINY)))
            assert abs(pd.Timestamp(found["entered_at"].iloc[0]) - entered) <= pd.Timedelta(seconds=1), seed
            assert abs(found["dwell_s"].iloc[0] - (MAXY - MINY) / 5.0) <= 1.5, seed


@pytest.mark.parametrize("hz", [1.0, 0.5, 10.0])
def test_a_standing_machine_without_reported_speed_adds_no_distance_and_is_idle(hz: float) -> None:
    """Positions only (no CAN speed), standalone receiver: 20 min standing between two 300 m drives. Before, its
    2.5 m jitter added about 1 km while it stood and counted most of the standing as moving."""
    x, y, speed = stop_at_edge(-50.0, hz)
    stopped = START + pd.Timedelta(seconds=300.0 / 8.0)
    for seed in range(2):
        frame = telemetry(x, y, speed, hz, "standalone", seed, white_m=2.5, report_speed=False)
        activity = run_in_chunks(Positioning(), frame, site=SITE, chunk="10min")["activity"]
        minute = pd.to_datetime(activity["minute"], utc=True)
        standing = (minute >= stopped + pd.Timedelta(minutes=1)) & (minute < stopped + pd.Timedelta(minutes=19))
        assert activity.loc[standing, "distance_mm"].sum() / 1000 <= 5.0, seed  # 18 whole minutes standing
        assert activity.loc[standing, "moving_ms"].sum() == 0, seed
        assert abs(activity["idle_ms"].sum() / 1000 - 1200.0) <= 30.0, seed
