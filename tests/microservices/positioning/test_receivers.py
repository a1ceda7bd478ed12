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
