"""Shared fixtures: 40 simulated minutes of the demo quarry with 14 haulers, junction running, noise and faults."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from evaluation.pipeline import telemetry_from_messages
from evaluation.positioning import FAULTS
from evaluation.traffic_awareness import machines_of
from simulators.engine import simulate
from simulators.faults import parse_faults
from simulators.machines import Behaviour
from simulators.site import load_site
from sitepulse.sitefile import SiteConfig


@dataclass(frozen=True)
class Simulated:
    site: SiteConfig
    telemetry: pd.DataFrame
    truth: list[dict]
    machines: pd.DataFrame


@pytest.fixture(scope="session")
def traffic_run() -> Simulated:
    """Forty minutes with queues at every zone and drivers who run the junction (near-misses to find)."""
    site = load_site(None)
    sim = simulate(site, site_id="demo", duration_s=2400, seed=5, haulers=14, faults=parse_faults(FAULTS),
                   behaviour=Behaviour(p_run_junction=1.0))
    telemetry = telemetry_from_messages(sim)
    truth = sim.truth_records()
    return Simulated(site, telemetry, truth, machines_of(truth))
