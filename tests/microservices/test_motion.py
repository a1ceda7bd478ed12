"""Fused motion: the track wins over a dead, missing or backwards compass and a stuck speed signal."""

from __future__ import annotations

import numpy as np
import pytest

from microservices.motion import angle_diff, motion_from_fixes


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
    moving = np.arange(60) >= 5
    assert np.nanmax(angle_diff(m.course_deg[moving], 60.0)) < 12
    assert np.all(np.abs(m.speed_kmh[moving] - 25.0) < 4)


def test_a_healthy_compass_is_used_as_reported() -> None:
    group, t, x, y = _drive()
    heading = np.full(60, 61.0)
    m = motion_from_fixes(group, t, x, y, np.full(60, 25.0), heading)
    assert m.heading_used[3:].all() and np.allclose(m.course_deg[3:], 61.0)
