"""Shared fixtures: the demo quarry and 30 simulated minutes of its telemetry with noise, jumps and faults."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from evaluation.pipeline import telemetry_from_messages
from evaluation.positioning import FAULTS
from simulators.engine import simulate
from simulators.faults import parse_faults
from simulators.sensors import SensorConfig
from simulators.site import load_site
from sitepulse.sitefile import SiteConfig


@dataclass(frozen=True)
class Simulated:
    site: SiteConfig
    telemetry: pd.DataFrame
    truth: list[dict]


@pytest.fixture(scope="session")
def simulated() -> Simulated:
    """Half an hour of the demo quarry with more GNSS jumps than usual, so every test meets some."""
    site = load_site(None)
    sim = simulate(site, site_id="demo", duration_s=1800, seed=21, faults=parse_faults(FAULTS),
                   sensors=SensorConfig(gnss_jump_rate=0.004))
    telemetry = telemetry_from_messages(sim)
    return Simulated(site, telemetry, sim.truth_records())
