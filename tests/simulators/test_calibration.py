"""The "recorded" behaviour profile against real fleet-management records (read where they lie, never copied)."""

from __future__ import annotations

import numpy as np
import pytest

from simulators import calibration
from simulators.machines import BEHAVIOURS, Behaviour

pytestmark = pytest.mark.skipif(not calibration.records_path().exists(),
                                reason="real records not present (../shared/realdata/modular-dispatch-cycles)")


@pytest.fixture(scope="module")
def real() -> calibration.Distributions:
    return calibration.recorded()


@pytest.fixture(scope="module")
def simulated() -> calibration.Distributions:
    return calibration.simulated([1, 2], hours=2.0, behaviour="recorded", haulers=11)


def test_recorded_payload_spread_matches_the_records(real: calibration.Distributions) -> None:
    rng = np.random.default_rng(7)
    draws = np.array([BEHAVIOURS["recorded"].payload_fraction(rng) for _ in range(20_000)])
    for q in (0.05, 0.1, 0.25, 0.75, 0.9, 0.95, 0.99):
        assert np.quantile(draws / np.median(draws), q) == pytest.approx(np.quantile(real.payload, q), abs=0.01)
    # the historical default is narrower at the bottom and wider at the top: it is not the recorded fleet
    default = np.array([Behaviour().payload_fraction(rng) for _ in range(20_000)])
    assert np.quantile(default / np.median(default), 0.99) > np.quantile(real.payload, 0.99) + 0.03


def test_simulated_cycles_time_like_the_records(real: calibration.Distributions,
                                                simulated: calibration.Distributions) -> None:
    assert np.median(simulated.dumping_s) == pytest.approx(np.median(real.dumping_s), rel=0.15)
    assert np.median(simulated.loading_s) == pytest.approx(np.median(real.loading_s), rel=0.25)
    # trucks stand loaded 49-60 s after the last pass (longer only when a truck pulls in beside them)
    assert np.quantile(simulated.loaded_pause_s, 0.05) >= 49.0
    assert np.median(simulated.loaded_pause_s) <= 60.0
    # queues at the loader: about half of the cycles wait, as recorded
    assert abs((simulated.loader_queue_s == 0).mean() - (real.loader_queue_s == 0).mean()) < 0.15


def test_the_table_names_every_figure(real: calibration.Distributions,
                                      simulated: calibration.Distributions) -> None:
    text = calibration.table(real, simulated)
    for name in calibration.FIGURES:
        assert f"{name:20} records" in text and f"{name:20} simulated" in text
