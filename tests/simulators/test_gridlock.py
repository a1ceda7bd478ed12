"""A bigger fleet keeps moving: the junction is first come, first served, so trucks never wait on each other."""

from __future__ import annotations

import pytest

from simulators.engine import Simulation
from simulators.site import load_site


@pytest.mark.parametrize(("haulers", "hz", "seed"), [(14, 1.0, 41), (8, 2.0, 22)])
def test_fleet_does_not_gridlock(haulers: int, hz: float, seed: int) -> None:
    """Both runs used to stall within the first hour (3 cycles in 2 h with 14 haulers); the loaders are the
    bottleneck, so 14 haulers should load about as often as the three loading units allow."""
    sim = Simulation(load_site(), duration_s=3600, seed=seed, haulers=haulers, hz=hz)
    for _ in sim:
        pass
    cycles = sum(1 for r in sim.truth_records() if r["type"] == "cycle")
    assert cycles >= 25, cycles  # before the fix: 3 and 12; after: 51 and 33
