"""Shared simulator runs: simulate once per session and let many tests read the result."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from simulators.engine import Simulation
from simulators.faults import FaultConfig
from simulators.site import load_site
from sitepulse.recording import Message


@dataclass
class Run:
    sim: Simulation
    messages: list[Message]
    truth: list[dict]


def run(duration_s: float = 3600, seed: int = 7, faults: FaultConfig | None = None, **kw) -> Run:
    sim = Simulation(load_site(), site_id="t", duration_s=duration_s, seed=seed, faults=faults, **kw)
    messages = list(sim)
    return Run(sim, messages, sim.truth_records())


@pytest.fixture(scope="session")
def hour() -> Run:
    """One clean simulated hour of the demo quarry."""
    return run(3600, seed=7)


@pytest.fixture(scope="session")
def faulty() -> Run:
    """A simulated hour with every fault switched on at a high rate (so the rate checks are tight)."""
    return run(3600, seed=11, faults=FaultConfig(dropout=0.02, duplicate=0.03, reorder=0.02, malformed=0.01,
                                                 wrong_type=0.01))
