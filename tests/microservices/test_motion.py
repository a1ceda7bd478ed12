"""Fused motion: the track wins over a dead, missing or backwards compass and a stuck speed signal."""

from __future__ import annotations

import numpy as np
import pytest

from microservices.motion import angle_diff, motion_from_fixes
from microservices.receiver import receiver_class


def _drive(n: int = 60, course: float = 60.0, kmh: float = 25.0, noise_m: float = 0.3, seed: int = 1):
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.int64) * 1000
    d = kmh / 3.6 * np.arange(n)
    x = d * np.sin(np.radians(course)) + rng.normal(0, noise_m, n)
    y = d * np.cos(np.radians(course)) + rng.normal(0, noise_m, n)
    x[30] += 40.0  # a GNSS jump
    return np.zeros(n, np.int64), t, x, y


@pytest.mark.parametrize(("heading", "speed"), [
    (np.full(60, 0.0), np.full(60, 25.0)),  # dead compass sends 0
    (np.full(60, np.nan), np.full(60, 25.0)),  # no heading field
    (np.full(60, 240.0), np.full(60, 25.0)),  # mounted backwards
    (np.full(60, 60.0), np.full(60, 0.0)),  # speed stuck at 0
])
def test_broken_reports_give_way_to_the_track(heading: np.ndarray, speed: np.ndarray) -> None:
    group, t, x, y = _drive()
    m = motion_from_fixes(group, t, x, y, speed, heading)
    # positions confirm motion only over a baseline: a speed stuck at 0 from the first fix is overridden once
    # min_baseline_s (5 s) of fixes give the shortest baseline and the check disagrees
    moving = np.arange(60) >= 7
    assert np.nanmax(angle_diff(m.course_deg[moving], 60.0)) < 12
    assert np.all(np.abs(m.speed_kmh[moving] - 25.0) < 4)


def test_a_healthy_compass_is_used_as_reported() -> None:
    group, t, x, y = _drive()
    # a live compass on a moving machine varies by tenths of a degree, at the resolution it reports
    heading = np.round(61.0 + np.random.default_rng(2).normal(0, 0.5, 60), 1)
    m = motion_from_fixes(group, t, x, y, np.full(60, 25.0), heading)
    assert m.heading_used[3:].all() and np.allclose(m.course_deg[3:], heading[3:])


@pytest.mark.parametrize("frozen", [60.0, 46.0])  # the way it drives first; 14 deg off, inside the tolerance
def test_a_frozen_compass_gives_way_to_the_track_while_moving(frozen: float) -> None:
    n = 60
    t = np.arange(n, dtype=np.int64) * 1000
    course = np.where(np.arange(n) < 30, 60.0, 150.0)  # drives at 60 deg, then turns to 150 deg
    step = 25 / 3.6
    x = np.cumsum(step * np.sin(np.radians(course)))
    y = np.cumsum(step * np.cos(np.radians(course)))
    m = motion_from_fixes(np.zeros(n, np.int64), t, x, y, np.full(n, 25.0), np.full(n, frozen))
    # once a few checks show it never changes while the machine moves, the value is not used, agreeing or not
    assert not m.heading_used[6:].any()
    assert np.nanmax(angle_diff(m.course_deg[6:30], 60.0)) < 1
    assert np.nanmax(angle_diff(m.course_deg[33:], 150.0)) < 5


def test_speed_over_ground_replaces_a_dead_speed_signal_and_splits_anywhere() -> None:
    from microservices.ground_speed import carried_arrays, speed_over_ground

    group, t, x, y = _drive(n=90)
    machine = np.array(["H1"] * 90, object)
    dead = np.where(np.arange(90) >= 20, 0.0, 25.0)  # the speed signal dies after 20 s
    whole, _ = speed_over_ground(machine, t, x, y, dead, {})
    # judged over the 20-s baseline, the dead signal disagrees once the distance it reports falls short of the
    # displacement by the tolerance (about half the baseline), and is overridden once most checks of the 20-s
    # trust window disagree
    assert np.all(np.abs(whole[45:] - 25.0) < 4) and np.allclose(whole[3:20], 25.0)
    parts, tails = [], {}  # type: ignore[var-annotated]
    for lo, hi in ((0, 7), (7, 41), (41, 90)):
        speed, tails = speed_over_ground(machine[lo:hi], t[lo:hi], x[lo:hi], y[lo:hi], dead[lo:hi], tails)
        parts.append(speed)
    np.testing.assert_allclose(np.concatenate(parts), whole)
    # what is carried is what the next samples need, not a tail to compute again: the newest fix, the steps of
    # the 5-s track and 0.5-s predict windows and the speed checks of the 20-s trust window
    carried = carried_arrays(tails)
    assert carried["ft"].tolist() == [int(t[-1])] and len(carried["st"]) <= 6 and len(carried["c"]) <= 20


def test_speed_over_ground_is_the_same_for_any_split_of_a_messy_mixed_fleet() -> None:
    """Three machines: GNSS jumps, repeated and dropped samples, a 10-Hz stretch, a speed stuck at 0 and one
    absent, fed whole and in random pieces (one piece holding a machine's late samples): the same speeds."""
    from microservices.ground_speed import speed_over_ground

    rng = np.random.default_rng(7)
    rows = []
    for name, speed_fault in (("A", None), ("B", "stuck0"), ("C", "absent")):
        t = np.cumsum(rng.choice([1000, 1000, 1000, 2000, 0], 300)).astype(np.int64)
        t[100:150] = t[100] + np.arange(50) * 100  # 10 Hz for 5 s
        t[150:] += t[149] - t[150] + 1000
        kmh = np.where((np.arange(300) // 60) % 2 == 0, 0.0, 28.0) + rng.normal(0, 0.3, 300).clip(0)
        d = np.cumsum(np.r_[0, np.diff(t)] / 1000 * kmh / 3.6)
        x, y = d * 0.6 + rng.normal(0, 1.0, 300), d * 0.8 + rng.normal(0, 1.0, 300)
        x[rng.choice(300, 6, replace=False)] += 60.0  # multipath jumps
        reported = {None: kmh, "stuck0": np.where(np.arange(300) > 90, 0.0, kmh), "absent": np.full(300, np.nan)}
        rows.append((np.full(300, name, object), t, x, y, reported[speed_fault]))
    machine, t, x, y, v = (np.concatenate(c) for c in zip(*rows, strict=True))
    whole, _ = speed_over_ground(machine, t, x, y, v, {})
    # motion.py's speed is the same walk's: the same speeds (its motion_from_fixes over the whole batch)
    group = np.repeat(np.arange(3), 300)
    fused = motion_from_fixes(group, t, x, y, v, np.full(900, np.nan))
    np.testing.assert_array_equal(fused.speed_kmh, whole)
    # each speed is the one reported, or where that is not trusted 0 (standing within the noise floor) or the
    # speed over the baseline, never the reported one of a stuck signal while driving
    reported = np.isclose(whole, v, equal_nan=True)
    i = np.arange(900) % 300
    phase_start = t[np.arange(900) - i % 60]  # the machine starts or stops every 60 samples
    settled = (i > 120) & (t - phase_start >= 25_000)  # a baseline (20 s) and its smoothing after the change
    driving, standing = settled & (i // 60 % 2 == 1), settled & (i // 60 % 2 == 0)
    b_driving = (machine == "B") & driving
    assert reported[(machine == "A") & (driving | standing)].all()
    # stuck at 0: from the track (1-s steps under 1 m of jitter: a few km/h off, never near 0)
    assert np.median(np.abs(whole[b_driving] - 28.0)) < 3 and np.all(np.abs(whole[b_driving] - 28.0) < 12)
    assert np.all(whole[(machine == "B") & standing] == 0.0)
    c = machine == "C"  # absent: from the track, 0 while it stands (1 m of jitter never drives it off)
    assert np.median(np.abs(whole[c & driving] - 28.0)) < 3 and np.all(whole[c & standing] == 0.0)
    assert fused.standing[c & standing].all() and not fused.standing[c & driving].any()
    for seed in range(3):
        cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, 300), 12, replace=False))
        pieces: list[np.ndarray] = []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, 300], strict=True):
            pieces.append(np.r_[lo:hi, 300 + lo:300 + hi, 600 + lo:600 + hi])
        pieces[3] = np.r_[pieces[3], pieces[4][pieces[4] >= 600]]  # C's next piece arrives with this one
        pieces[4] = pieces[4][pieces[4] < 600]
        out, carried = np.full(900, np.nan), {}
        for rows_in in pieces:
            rows_in = rows_in[np.lexsort((t[rows_in], machine[rows_in]))]
            out[rows_in], carried = speed_over_ground(machine[rows_in], t[rows_in], x[rows_in], y[rows_in],
                                                     v[rows_in], carried)
        np.testing.assert_array_equal(out, whole)


@pytest.mark.parametrize("hz", [0.5, 1.0, 10.0])
@pytest.mark.parametrize("reported", ["healthy", "absent", "stuck at 12 km/h"])
def test_a_standing_machine_never_moves_on_metres_of_jitter(hz: float, reported: str) -> None:
    """A standalone receiver's 2.5 m of white noise per axis (plus multipath jumps): 1-s steps of several m/s, yet
    the machine stands all along by its own speed, and where that is absent or stuck by its displacement over the
    baseline within the noise floor."""
    rng = np.random.default_rng(5)
    n = int(600 * hz)
    t = np.round(np.arange(n) / hz * 1000).astype(np.int64)
    x, y = 100 + rng.normal(0, 2.5, n), 50 + rng.normal(0, 2.5, n)
    x[n // 3:n // 3 + int(4 * hz)] += 30.0  # a 4-s multipath jump
    speed = {"healthy": np.zeros(n), "absent": np.full(n, np.nan), "stuck at 12 km/h": np.full(n, 12.0)}[reported]
    m = motion_from_fixes(np.zeros(n, np.int64), t, x, y, speed, np.full(n, np.nan))
    settled = t >= 60_000  # a baseline is given; a stuck speed is found within the trust window
    assert m.standing[settled].all() and np.all(m.speed_kmh[settled] == 0.0)
    assert np.all(m.vx[settled] == 0.0) and np.all(m.vy[settled] == 0.0)
    assert receiver_class(m.noise_m[-1]) == "standalone"
