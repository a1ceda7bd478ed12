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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the module's runs take about 100 s on an idle machine

RTK_SEEDS = (1, 2, 3, 4)
PLAIN_SEEDS = (1, 2, 3)
STANDALONE_SEEDS = (1, 2, 3)  # 2.5 m of white GNSS noise per axis plus 1.5 m of drift and jumps, 1 Hz
WHITE_SEEDS = (1, 2, 3, 4, 5, 6, 7)  # issue 30's bar as written: 2.5 m of white noise per axis, 1 Hz (jumps, no drift)
PROFILES = ("rtk", "plain", "standalone", "white-2.5")


@pytest.fixture(scope="module")
def scores() -> dict[str, list[RunScore]]:
    runs = [("rtk", seed) for seed in RTK_SEEDS] + [("plain", seed) for seed in PLAIN_SEEDS] \
        + [("standalone", seed) for seed in STANDALONE_SEEDS] + [("white-2.5", seed) for seed in WHITE_SEEDS]
    scored = run_in_parallel(score_run, [{"seed": seed, "hours": 2.0, "profile": profile} for profile, seed in runs])
    paired = list(zip(runs, scored, strict=True))
    return {profile: [s for (p, _), s in paired if p == profile] for profile in PROFILES}


@pytest.fixture(scope="module")
def rtk(scores: dict[str, list[RunScore]]) -> list[RunScore]:
    return scores["rtk"]


@pytest.fixture(scope="module")
def standalone(scores: dict[str, list[RunScore]]) -> list[RunScore]:
    return scores["standalone"]


@pytest.fixture(scope="module")
def white(scores: dict[str, list[RunScore]]) -> list[RunScore]:
    return scores["white-2.5"]


@pytest.fixture(scope="module")
def plain(scores: dict[str, list[RunScore]]) -> list[RunScore]:
    return scores["plain"]


def test_queue_waits_per_zone(plain: list[RunScore], rtk: list[RunScore], standalone: list[RunScore],
                              white: list[RunScore]) -> None:
    for s in plain + rtk + standalone + white:
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


def test_no_proximity_event_between_two_standing_machines_at_any_receiver(
        rtk: list[RunScore], plain: list[RunScore], standalone: list[RunScore], white: list[RunScore]) -> None:
    """Issue 30: two parked trucks raised 34 proximity events in 5 minutes under 1.5 m of jitter (94 over six
    seeds at 2.5 m before the Kalman filter and own-speed standing)."""
    for s in rtk + plain + standalone + white:
        assert s.standing_pair_events == 0, (s.seed, s.standing_pair_events)


def test_white_gnss_noise_meets_the_issue(white: list[RunScore]) -> None:
    """Issue 30's bar: recall and precision >= 90 % at 2.5 m of white noise per axis and 1 Hz; 94.6 % and 98.6 % over
    seven seeds. Precision was 85 %: single-moment 'critical' TTCs at junctions, where one truck had turned and its
    filter not yet followed; the velocity's error now widens the predicted miss distance like the position's."""
    t = totals(white)
    assert t.clear >= 40
    assert t.found_pct >= 90, t
    assert t.spurious_pct <= 10, t


def test_standalone_gnss_finds_close_encounters(standalone: list[RunScore]) -> None:
    """Recall >= 90 % with the standalone class's slow drift on top of its white noise (was 75 %, 33 of 44 over six
    seeds, before the Kalman filter)."""
    t = totals(standalone)
    assert t.clear >= 15
    assert t.found_pct >= 90, t
    assert t.spurious_pct <= 25, t  # regression floor: 16 % over three seeds (22 % before the velocity's error)


@pytest.mark.xfail(strict=True, reason="1.5 m of drift per axis over 20 s is not averaged out by any filter: two "
                                       "machines' distances are off by about 2 m, and passes measured under the 10 m "
                                       "critical distance stay; 84 % precision over three seeds")
def test_standalone_gnss_with_drift_meets_the_precision_bar(standalone: list[RunScore]) -> None:
    assert totals(standalone).spurious_pct <= 10
