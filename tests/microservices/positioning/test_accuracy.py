"""The issue's bar, scored against the simulator's ground truth with GNSS noise, jumps and faults on.

>= 98 % of true zone visits found with entry and exit within 10 s, <= 2 % spurious visits, distance
within 3 % of true, on three seeds; then the same bar on runs the defaults were not developed on
(other seeds, 0.5 and 2 Hz, noisier and cleaner GNSS, more haulers).
"""

from __future__ import annotations

import pytest

from evaluation.positioning import TARGETS, format_scores, score_run
from simulators.sensors import SensorConfig
from tests.microservices.parallel import run_in_parallel

pytestmark = pytest.mark.slow


def _assert_targets(score) -> None:
    print(format_scores([score]))
    assert score.true_visits >= 50
    assert score.visits_found_pct >= TARGETS["visits_found_pct"]
    assert score.spurious_pct <= TARGETS["spurious_pct"]
    assert score.distance_error_pct <= TARGETS["distance_error_pct"]
    assert score.speeding_found >= 0.9 * score.speeding_true  # not in the bar, but must not regress


GENERALISATION = {
    "0.5Hz": {"seed": 101, "hz": 0.5},
    "2Hz": {"seed": 102, "hz": 2.0, "hours": 0.5},
    "noisy-gnss": {"seed": 103, "sensors": SensorConfig(gnss_sigma_m=3.0, gnss_jump_rate=0.005)},
    "long-jumps": {"seed": 104, "sensors": SensorConfig(gnss_sigma_m=0.5, gnss_jump_rate=0.003,
                                                        gnss_jump_m=(10.0, 100.0))},
    "14-haulers": {"seed": 105, "haulers": 14, "hours": 0.75},
}
SEEDS = (1, 2, 3)
# issue 30: every receiver class, sites the defaults were not developed on; standalone with 2.5 m of white noise per
# axis at 1 Hz must find >= 97 % of zone visits at >= 97 % precision, RTK keeps the bar above
RECEIVER_CASES = {
    "standalone-demo": {"seed": 201, "sensors": "standalone"},
    "standalone-copper-pit": {"seed": 202, "sensors": "standalone", "site": "copper_pit"},
    "sbas-copper-pit": {"seed": 203, "sensors": "sbas", "site": "copper_pit"},
    "rtk-copper-pit": {"seed": 204, "sensors": "rtk", "site": "copper_pit"},
    "standalone-positions-only": {"seed": 205, "sensors": "standalone", "speed_reported": False},
}


@pytest.fixture(scope="module")
def scores() -> dict[str, object]:
    """The three seeds of the bar and the runs the defaults were not developed on, scored side by side."""
    calls = {f"seed-{seed}": {"seed": seed, "hours": 2.0} for seed in SEEDS}
    calls |= {name: {"hours": 1.0} | case for name, case in GENERALISATION.items()}
    calls |= {name: {"hours": 1.0} | case for name, case in RECEIVER_CASES.items()}
    return dict(zip(calls, run_in_parallel(score_run, list(calls.values())), strict=True))


@pytest.mark.parametrize("seed", SEEDS)
def test_zone_visits_and_distance_meet_the_bar(scores: dict, seed: int) -> None:
    _assert_targets(scores[f"seed-{seed}"])


@pytest.mark.parametrize("case", list(GENERALISATION))
def test_detection_generalises(scores: dict, case: str) -> None:
    _assert_targets(scores[case])


@pytest.mark.parametrize("case", list(RECEIVER_CASES))
def test_zone_visits_hold_on_every_receiver_class(scores: dict, case: str) -> None:
    score = scores[case]
    print(format_scores([score]))
    standalone = RECEIVER_CASES[case]["sensors"] == "standalone"
    bar = 97.0 if standalone else TARGETS["visits_found_pct"]
    assert score.true_visits >= 50
    assert score.visits_found_pct >= bar
    assert 100.0 - score.spurious_pct >= bar
    if RECEIVER_CASES[case].get("speed_reported", True):
        assert score.distance_error_pct <= TARGETS["distance_error_pct"]
    else:  # positions only: jitter must not add kilometres (before: the fleet's distance +180 %, idle -80 %)
        assert score.fleet_distance_error_pct <= 10.0
