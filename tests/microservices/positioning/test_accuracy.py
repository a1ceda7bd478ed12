"""The issue's bar, scored against the simulator's ground truth with GNSS noise, jumps and faults on.

>= 98 % of true zone visits found with entry and exit within 10 s, <= 2 % spurious visits, distance
within 3 % of true, on three seeds; then the same bar on runs the defaults were not developed on
(other seeds, 0.5 and 2 Hz, noisier and cleaner GNSS, more haulers).
"""

from __future__ import annotations

import pytest

from microservices.positioning.score import TARGETS, format_scores, score_run
from simulators.sensors import SensorConfig


def _assert_targets(score) -> None:
    print(format_scores([score]))
    assert score.true_visits >= 50
    assert score.visits_found_pct >= TARGETS["visits_found_pct"]
    assert score.spurious_pct <= TARGETS["spurious_pct"]
    assert score.distance_error_pct <= TARGETS["distance_error_pct"]
    assert score.speeding_found >= 0.9 * score.speeding_true  # not in the bar, but must not regress


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_zone_visits_and_distance_meet_the_bar(seed: int) -> None:
    _assert_targets(score_run(seed, hours=2.0))


@pytest.mark.parametrize("case", [
    {"seed": 101, "hz": 0.5},
    {"seed": 102, "hz": 2.0, "hours": 0.5},
    {"seed": 103, "sensors": SensorConfig(gnss_sigma_m=3.0, gnss_jump_rate=0.005)},
    {"seed": 104, "sensors": SensorConfig(gnss_sigma_m=0.5, gnss_jump_rate=0.003, gnss_jump_m=(10.0, 100.0))},
    {"seed": 105, "haulers": 14, "hours": 0.75},
], ids=["0.5Hz", "2Hz", "noisy-gnss", "long-jumps", "14-haulers"])
def test_detection_generalises(case: dict) -> None:
    _assert_targets(score_run(hours=case.pop("hours", 1.0), **case))
