"""Scored against the simulator's ground truth (2 h per seed, 14 haulers, junction running, faults on).

The issue's bar: >= 95 % of true close encounters found, <= 5 % spurious, queue waits within 10 % of the
truth per zone. It is asserted for the ``rtk`` fit (RTK positions, GNSS-disciplined clocks), summed over
four seeds so one miss is not a quarter of the score. With plain GNSS the errors of two machines add up to
about 2 m in their distance, which the 10 m threshold cannot absorb: that profile keeps a regression floor
and a strict expected failure (see microservices/traffic_awareness/README.md, "Accuracy").
"""

from __future__ import annotations

import pytest

from evaluation.traffic_awareness import TARGETS, RunScore, score_run, totals
from tests.microservices.parallel import run_in_parallel

RTK_SEEDS = (1, 2, 3, 4)
PLAIN_SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def scores() -> dict[str, list[RunScore]]:
    runs = [("rtk", seed) for seed in RTK_SEEDS] + [("plain", seed) for seed in PLAIN_SEEDS]
    scored = run_in_parallel(score_run, [{"seed": seed, "hours": 2.0, "profile": profile} for profile, seed in runs])
    paired = list(zip(runs, scored, strict=True))
    return {profile: [s for (p, _), s in paired if p == profile] for profile in ("rtk", "plain")}


@pytest.fixture(scope="module")
def rtk(scores: dict[str, list[RunScore]]) -> list[RunScore]:
    return scores["rtk"]


@pytest.fixture(scope="module")
def plain(scores: dict[str, list[RunScore]]) -> list[RunScore]:
    return scores["plain"]


def test_queue_waits_per_zone(plain: list[RunScore], rtk: list[RunScore]) -> None:
    for s in plain + rtk:
        for zone, z in s.queue_zones.items():
            assert z["true_queues"] >= 15, (s.seed, zone)
            assert abs(z["queues"] - z["true_queues"]) <= max(2, 0.1 * z["true_queues"]), (s.seed, zone, z)
            assert z["mean_error_pct"] <= TARGETS["queue_wait_error_pct"], (s.seed, zone, z)


def test_encounters_meet_the_issue_with_rtk_positions(rtk: list[RunScore]) -> None:
    t = totals(rtk)
    assert t.clear >= 25
    assert t.found_pct >= TARGETS["found_pct"], t
    assert t.spurious_pct <= TARGETS["spurious_pct"], t


def test_plain_gnss_regression_floor(plain: list[RunScore]) -> None:
    t = totals(plain)
    assert t.clear >= 15
    assert t.found_pct >= 85 and t.spurious_pct <= 30, t


@pytest.mark.xfail(strict=True, reason="plain-GNSS error of two machines (about 2 m in their distance) against the "
                                       "10 m critical distance; see the service README, 'Accuracy'")
def test_plain_gnss_meets_the_issue(plain: list[RunScore]) -> None:
    assert totals(plain).encounters_meet_targets()
