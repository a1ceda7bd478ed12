"""Unit tests of the pure detection functions on hand-made tracks: jumps, smoothing, dwell, flicker, gaps."""

from __future__ import annotations

import numpy as np

from microservices.positioning import cleaning, results

CLEAN = {"jump_window_s": 15.0, "jump_tolerance_m": 8.0, "jump_tolerance_s": 0.6, "max_speed_kmh": 90.0,
         "smooth_window_s": 5.0}


def _clean(t_s: np.ndarray, x: np.ndarray, y: np.ndarray, **overrides: float) -> cleaning.Cleaned:
    t = np.round(np.asarray(t_s) * 1000).astype(np.int64)
    return cleaning.clean_positions(np.zeros(len(t), dtype=np.int64), t, np.asarray(x, float),
                                    np.asarray(y, float), **{**CLEAN, **overrides})


def test_a_multi_second_jump_is_rejected_while_driving_and_standing() -> None:
    t = np.arange(120.0)
    for speed in (0.0, 8.0, 14.0):  # standing, 29 km/h, 50 km/h
        x, y = speed * t, np.zeros_like(t)
        x[50:55] += 20.0  # a 20 m jump lasting 5 s
        y[80] += 40.0  # a one-sample spike
        cleaned = _clean(t, x, y)
        assert set(np.flatnonzero(cleaned.jump)) == {50, 51, 52, 53, 54, 80}, speed
        assert np.allclose(cleaned.x[~cleaned.jump], speed * t[~cleaned.jump], atol=1e-6)


def test_braking_and_turning_are_not_jumps() -> None:
    t = np.arange(0.0, 60.0, 0.5)  # 2 Hz
    speed = np.clip(14.0 - 1.2 * np.clip(t - 20, 0, None), 0, None)  # brakes at 1.2 m/s2 to a stop
    s = np.cumsum(speed) * 0.5
    angle = s / 150.0  # on a 150 m radius curve
    cleaned = _clean(t, 150 * np.sin(angle), 150 * (1 - np.cos(angle)))
    assert not cleaned.jump.any()


def test_smoothing_reduces_noise_without_lag() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(600.0)
    x, y = 6.0 * t, np.zeros_like(t)
    noisy_x, noisy_y = x + rng.normal(0, 1.0, len(t)), y + rng.normal(0, 1.0, len(t))
    cleaned = _clean(t, noisy_x, noisy_y)
    inner = slice(10, -10)
    assert np.std(cleaned.x[inner] - x[inner]) < 0.75 * np.std(noisy_x[inner] - x[inner])
    assert abs(np.mean(cleaned.x[inner] - x[inner])) < 0.2  # no lag behind a moving machine


def test_irregular_rates_and_gaps_are_handled_by_time_windows() -> None:
    rng = np.random.default_rng(5)
    t = np.sort(rng.choice(np.arange(0, 900, 0.5), 700, replace=False))
    t = t[(t < 300) | (t > 360)]  # a one-minute gap
    x = 5.0 * t
    cleaned = _clean(t, x, np.zeros_like(t))
    assert not cleaned.jump.any()
    assert np.allclose(cleaned.x, x, atol=1.0)


def test_last_good_fix_is_carried_through_short_gaps_only() -> None:
    t = np.array([0, 1000, 2000, 3000, 40_000], dtype=np.int64)
    good = np.array([True, False, False, True, False])
    x = np.array([1.0, 50.0, 60.0, 4.0, 99.0])
    g = np.zeros(5, dtype=np.int64)
    seed = np.full(5, np.nan)
    cx, cy, carried = cleaning.carry_fixes(g, t, x, x, good, seed, seed, seed, gap_ms=30_000)
    assert cx[:4].tolist() == [1.0, 1.0, 1.0, 4.0]
    assert np.isnan(cx[4])  # 37 s after the last good fix: unknown, not carried
    assert carried.tolist() == [False, True, True, False, False]
    # a carried fix from before the arrays (the state) seeds the first rows
    cx, _, carried = cleaning.carry_fixes(g[:2], np.array([0, 500]), x[:2], x[:2], np.array([False, False]),
                                          np.array([-1000.0, -1000.0]), np.array([7.0, 7.0]), np.array([7.0, 7.0]),
                                          gap_ms=30_000)
    assert cx.tolist() == [7.0, 7.0] and carried.all()


def _visits(kind: list[int], dwell_s: float = 5.0, step_ms: int = 1000, split: int | None = None):
    t = np.arange(len(kind), dtype=np.int64) * step_ms
    k = np.array(kind, dtype=np.int8)
    dwell = int(dwell_s * 1000)
    if split is None:
        return results.zone_series(t, k, None, dwell, dwell)[:2]
    v1, e1, state = results.zone_series(t[:split], k[:split], None, dwell, dwell)
    v2, e2, _ = results.zone_series(t[split:], k[split:], state, dwell, dwell)
    return v1 + v2, e1 + e2


IN, BAND, OUT = results.IN, results.BAND, results.OUT


def test_minimum_dwell_inside_and_outside() -> None:
    assert _visits([OUT] * 5 + [IN] * 4 + [OUT] * 10) == ([], [])  # 4 s inside: no visit
    assert _visits([OUT] * 5 + [IN] * 5 + [OUT] * 10) == ([(5000, 10000)], [5000])  # 5 s: a visit
    # out for 3 s then back: still the same visit; out for 6 s: two visits
    assert _visits([IN] * 8 + [OUT] * 3 + [IN] * 8 + [OUT] * 8)[0] == [(0, 19000)]
    assert _visits([IN] * 8 + [OUT] * 6 + [IN] * 8 + [OUT] * 8)[0] == [(0, 8000), (14000, 22000)]


def test_entry_is_dated_from_the_first_fix_inside_after_border_flicker() -> None:
    visits, entries = _visits([OUT] * 5 + [IN, BAND, IN, BAND] + [IN] * 10 + [OUT] * 10)
    assert entries == [5000] and visits == [(5000, 19000)]


def test_border_flicker_is_ignored_by_the_margin() -> None:
    flicker = [IN, BAND, IN, BAND, BAND, IN, BAND] * 4  # noise around the border: never beyond the grown polygon
    visits, entries = _visits([OUT] * 5 + [IN] * 10 + flicker + [OUT] * 10)
    assert entries == [5000]
    last_inside = 5 + 10 + max(i for i, k in enumerate(flicker) if k == IN)
    assert visits == [(5000, (last_inside + 1) * 1000)]  # left when the machine really crossed the border
    assert _visits([OUT] * 5 + [BAND, IN] * 20 + [OUT] * 10) == ([], [])  # straddling the border, never 5 s inside


def test_zone_series_is_incremental() -> None:
    rng = np.random.default_rng(11)
    kind = rng.choice([IN, BAND, OUT], size=400, p=[0.45, 0.1, 0.45])
    kind = np.repeat(kind, rng.integers(1, 12, size=400))[:1200].tolist()
    whole = _visits(kind)
    assert whole[0]  # the pattern has visits
    for split in (1, 17, 250, 599, 1100):
        assert _visits(kind, split=split) == whole


def test_speeding_episodes_need_the_minimum_duration_and_carry_across_batches() -> None:
    t = np.arange(30, dtype=np.int64) * 1000
    speed = np.array([20.0] * 5 + [33.0] * 2 + [20.0] * 5 + [31.0, 34.0, 36.0, 32.0] + [20.0] * 14)
    limit = np.full(30, 30.0)
    source = np.full(30, "road", dtype=object)
    over = speed > limit + 0.5
    whole, state = results.speeding_series(t, over, speed, limit, source, None, 3000, 30_000)
    assert state is None
    assert whole == [{"start": 12000, "end": 16000, "max": 36.0, "limit": 30.0, "source": "road"}]
    first, carried = results.speeding_series(t[:14], over[:14], speed[:14], limit[:14], source[:14], None, 3000, 30_000)
    rest, _ = results.speeding_series(t[14:], over[14:], speed[14:], limit[14:], source[14:], carried, 3000, 30_000)
    assert first + rest == whole


def test_a_speeding_episode_ends_at_its_last_sample_before_a_data_gap_in_any_split() -> None:
    t = np.r_[np.arange(10), np.arange(10) + 3600].astype(np.int64) * 1000  # an hour without data
    speed = np.array([40.0] * 10 + [40.0] * 6 + [20.0] * 4)
    limit, source = np.full(20, 30.0), np.full(20, "road", dtype=object)
    args = (speed > 30.5, speed, limit, source)
    whole, state = results.speeding_series(t, *args, None, 3000, 30_000)
    assert [(e["start"], e["end"]) for e in whole] == [(0, 9000), (3_600_000, 3_606_000)] and state is None
    for split in (5, 10, 12):
        first, carried = results.speeding_series(t[:split], *(a[:split] for a in args), None, 3000, 30_000)
        rest, _ = results.speeding_series(t[split:], *(a[split:] for a in args), carried, 3000, 30_000)
        assert first + rest == whole, split


def test_motion_state() -> None:
    state = results.motion_state(np.array([0.0, 0.5, 3.0, 3.0, np.nan]), np.array([1.0, 1.0, 1.0, 0.0, np.nan]), 1.0)
    assert results.STATE_NAMES[state].tolist() == ["idle", "idle", "moving", "off", "idle"]


def test_zone_series_with_uncertain_positions_is_incremental() -> None:
    """Entry confirmed only once a sure sample is seen, entry dated from when a standing position held: any split
    of the samples gives the same visits."""
    rng = np.random.default_rng(12)
    kind = np.repeat(rng.choice([IN, BAND, OUT], size=400, p=[0.45, 0.1, 0.45]), rng.integers(1, 12, size=400))[:1200]
    t = np.arange(len(kind), dtype=np.int64) * 1000
    sure = (kind == IN) & (rng.random(len(kind)) < 0.2)
    standing = np.repeat(rng.random(300) < 0.5, 4)[:len(kind)]
    run_start = np.maximum.accumulate(np.where(standing & ~np.r_[False, standing[:-1]], t, 0))
    held = np.where(standing, run_start, t)

    def run(split: int | None) -> tuple[list, list]:
        if split is None:
            return results.zone_series(t, kind, None, 5000, 5000, sure, held)[:2]
        v1, e1, state = results.zone_series(t[:split], kind[:split], None, 5000, 5000, sure[:split], held[:split])
        v2, e2, _ = results.zone_series(t[split:], kind[split:], state, 5000, 5000, sure[split:], held[split:])
        return v1 + v2, e1 + e2

    whole = run(None)
    assert whole[0] and whole[0] != _visits(kind.tolist())[0]  # the pattern has visits, and sure/held matter
    for split in (1, 17, 250, 599, 1100):
        assert run(split) == whole, split


def test_an_entry_waits_for_a_sure_sample_and_is_dated_from_the_first_inside() -> None:
    t = np.arange(45, dtype=np.int64) * 1000
    kind = np.array([OUT] * 5 + [IN] * 30 + [OUT] * 10, dtype=np.int8)
    sure = np.zeros(45, bool)
    assert results.zone_series(t, kind, None, 5000, 5000, sure)[:2] == ([], [])  # never surely inside: no visit
    sure[20] = True
    assert results.zone_series(t, kind, None, 5000, 5000, sure)[:2] == ([(5000, 35000)], [5000])
    held = np.where((t >= 3000) & (t < 30_000), 3000, t)  # standing from 3 s; its mean settled inside at 5 s
    assert results.zone_series(t, kind, None, 5000, 5000, sure, held)[:2] == ([(5000, 35000)], [5000])
    kind[:5] = BAND  # no OUT run before: the truck stood there since 3 s
    assert results.zone_series(t, kind, None, 5000, 5000, sure, held)[:2] == ([(3000, 35000)], [3000])
