"""Receiver noise estimated online from a machine's own fixes while it stands, and the class it implies."""

from __future__ import annotations

import numpy as np
import pytest

from microservices.ground_speed import motion_over_ground
from microservices.motion import motion_from_fixes
from microservices.receiver import PRIOR_NOISE_M, estimate_noise, noise_m_of_state, receiver_class


def _shift(n_s: float, hz: float, noise_m: float, seed: int = 1, jumps: int = 4, drive: bool = True):
    """Stand 200 s, drive 200 s at 20 km/h, stand again; white noise per axis; multipath jumps of 40 m, 1-6 s."""
    rng = np.random.default_rng(seed)
    n = int(n_s * hz)
    t = np.round(np.arange(n) / hz * 1000).astype(np.int64)
    s = t / 1000
    v = np.where(drive & (s >= 200) & (s < 400), 20 / 3.6, 0.0)
    d = np.cumsum(v) / hz
    x, y = d * 0.6 + rng.normal(0, noise_m, n), d * 0.8 + rng.normal(0, noise_m, n)
    for start in rng.choice(n, jumps, replace=False):
        x[start:start + max(1, int(rng.uniform(1, 6) * hz))] += 40.0
    return np.full(n, "M", object), t, x, y, v * 3.6


@pytest.mark.parametrize("hz", [0.5, 1.0, 10.0])
@pytest.mark.parametrize(("noise_m", "expected"), [(0.02, "rtk"), (0.5, "sbas"), (2.5, "standalone")])
def test_noise_and_class_from_a_standing_machine(noise_m: float, expected: str, hz: float) -> None:
    machine, t, x, y, kmh = _shift(600, hz, noise_m)
    for label, speed in (("healthy", kmh), ("speed absent", np.full(len(t), np.nan))):
        noise, _ = estimate_noise(machine, t, x, y, speed, {})
        assert abs(noise[-1] / noise_m - 1) < 0.35, (label, noise[-1])
        assert receiver_class(noise[-1]) == expected, label
        assert noise[0] == pytest.approx(PRIOR_NOISE_M)  # the conservative prior until there is evidence


def test_a_stuck_speed_does_not_inflate_the_noise() -> None:
    """Speed stuck at 0 while driving: the drive's displacement is not taken for jitter."""
    machine, t, x, y, _ = _shift(600, 1.0, 0.02)
    noise, _ = estimate_noise(machine, t, x, y, np.zeros(len(t)), {})
    assert receiver_class(noise[-1]) == "rtk" and noise[-1] < 0.05


def test_any_batch_split_gives_the_same_noise_and_motion() -> None:
    machine, t, x, y, kmh = _shift(600, 2.0, 1.5, seed=3)
    whole, _ = motion_over_ground(machine, t, x, y, kmh, {})
    for seed in range(3):
        cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(t)), 15, replace=False))
        carried: dict = {}
        parts = []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(t)], strict=True):
            part, carried = motion_over_ground(machine[lo:hi], t[lo:hi], x[lo:hi], y[lo:hi], kmh[lo:hi], carried)
            parts.append(part)
        for field in ("speed_kmh", "standing", "noise_m"):
            np.testing.assert_array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(whole, field))


def test_a_tail_fed_again_is_not_counted_twice() -> None:
    """motion_from_fixes with the noise state only: a caller feeding the last 60 s again with each batch gets the
    estimate of feeding each sample once."""
    machine, t, x, y, kmh = _shift(600, 1.0, 0.5, seed=4)
    group = np.zeros(len(t), np.int64)
    once = motion_from_fixes(group, t, x, y, kmh, np.full(len(t), np.nan), names=np.array(["M"]))
    state: dict = {}
    for lo in range(0, len(t), 100):
        rows = slice(max(0, lo - 60), lo + 100)
        m = motion_from_fixes(group[rows], t[rows], x[rows], y[rows], kmh[rows], np.full(len(t[rows]), np.nan),
                              names=np.array(["M"]), noise_state=state)
        state = m.noise_state
    assert noise_m_of_state(state, "M") == pytest.approx(once.noise_m[-1], rel=0.05)


def test_receiver_class_bands_are_physical() -> None:
    assert receiver_class(0.02) == "rtk" and receiver_class(0.3) == "sbas" and receiver_class(1.5) == "standalone"
    assert receiver_class(np.array([0.01, 0.5, 3.0])).tolist() == ["rtk", "sbas", "standalone"]
