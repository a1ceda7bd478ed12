"""Fixtures for weight-loading tests: synthetic hauler traces and cached simulator runs with ground truth."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest

from evaluation.weight_loading import simulated
from simulators.faults import parse_faults
from simulators.machines import Behaviour
from simulators.sensors import SensorConfig

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
RATED = 28_000.0


def hauler_trace(
    *,
    passes: tuple[float, ...] = (9_000.0, 9_500.0, 9_500.0),
    hz: float = 1.0,
    noise_kg: float = 300.0,
    bounce_kg: float = 1_200.0,
    seed: int = 0,
    machine_id: str = "H1",
    cycles: int = 1,
) -> pd.DataFrame:
    """A hauler driving empty, loaded in passes at a standstill, hauling with body bounce, dumping, returning."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / hz
    segments: list[tuple[float, float, float]] = []  # (duration s, payload at start, payload at end, speed)
    speeds: list[float] = []

    def add(duration: float, p0: float, p1: float, speed: float) -> None:
        segments.append((duration, p0, p1))
        speeds.append(speed)

    for _ in range(cycles):
        add(120, 0, 0, 30.0)  # return empty
        add(20, 0, 0, 0.0)  # spotted, waiting for the first pass
        level = 0.0
        for bucket in passes:
            add(4, level, level + bucket, 0.0)  # bucket tipped
            level += bucket
            add(26, level, level, 0.0)
        add(8, level, level, 0.0)  # settles, operator signals
        add(240, level, level, 25.0)  # haul with bounce
        add(8, level, level, 0.0)  # reverse to the tip edge
        add(25, level, 0, 0.0)  # dump
        add(10, 0, 0, 0.0)
    add(120, 0, 0, 30.0)
    t_parts, p_parts, v_parts = [], [], []
    t0 = 0.0
    for (duration, p0, p1), speed in zip(segments, speeds, strict=True):
        n = max(1, int(round(duration * hz)))
        t_parts.append(t0 + np.arange(n) * dt)
        p_parts.append(np.linspace(p0, p1, n, endpoint=False) if p0 != p1 else np.full(n, p0))
        v_parts.append(np.full(n, speed))
        t0 += n * dt
    t = np.concatenate(t_parts)
    true_p = np.concatenate(p_parts)
    v = np.concatenate(v_parts)
    bounce = np.where(v > 5, rng.normal(0, bounce_kg, len(t)), 0.0) * (true_p > 0)
    payload = np.clip(true_p + rng.normal(0, noise_kg, len(t)) + bounce, 0, None)
    return pd.DataFrame({
        "site_id": "synthetic",
        "machine_id": machine_id,
        "ts": pd.Timestamp(START) + pd.to_timedelta(t, unit="s"),
        "seq": np.arange(len(t)),
        "payload_kg": payload.round(1),
        "speed_kmh": v + np.where(v > 0, rng.normal(0, 0.2, len(t)), 0),
        "lat": 59.3 + np.cumsum(v / 3.6 * dt) / 111_320.0,  # the fixes move as fast as the reported speed says
        "lon": 18.1 + np.zeros(len(t)),
        "fuel_used_l": 1000 + np.cumsum(np.full(len(t), dt * 20 / 3600)).round(3),
        "engine_hours": 5000 + np.cumsum(np.full(len(t), dt / 3600)).round(4),
        "engine_on": True,
    })


@pytest.fixture
def trace() -> Callable[..., pd.DataFrame]:
    """Factory of synthetic hauler traces (see hauler_trace)."""
    return hauler_trace


@pytest.fixture
def synthetic_machines() -> pd.DataFrame:
    return pd.DataFrame([["H1", "hauler", "A30G", RATED], ["H2", "hauler", "A30G", RATED],
                         ["L1", "loader", "L220H", 10_000.0]],
                        columns=["machine_id", "kind", "model", "rated_payload_kg"])


FAULTS = "dropout=0.01,duplicate=0.02,reorder=0.02,malformed=0.005,wrong_type=0.005"


@cache
def simulation(seed: int, hours: float, hz: float = 1.0, noisy: bool = False, overloads: bool = False
               ) -> tuple[pd.DataFrame, list[dict], Any, pd.DataFrame]:
    """One simulator run (faults on), cached for the session: telemetry, truth, site, machine registry."""
    sensors = SensorConfig(payload_noise_frac=0.025, bounce_frac=0.10, gnss_sigma_m=3.0) if noisy else None
    behaviour = Behaviour(p_over_120=0.15, p_over_110=0.10) if overloads else None
    return simulated(seed, hours, hz=hz, faults=parse_faults(FAULTS), sensors=sensors, behaviour=behaviour)


@pytest.fixture(scope="session")
def simulate_run() -> Callable[..., tuple[pd.DataFrame, list[dict], Any, pd.DataFrame]]:
    """The cached simulator run factory (see simulation)."""
    return simulation
