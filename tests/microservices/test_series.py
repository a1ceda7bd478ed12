"""The shared series kernel: (machine, time) keys, per-machine windows and exact window medians."""

from __future__ import annotations

import numpy as np
import pandas as pd

from microservices.series import KEY_BITS, KEY_SPAN, after_tail, moved_median, packed, window_bounds, window_median


def test_packed_keys_sort_by_machine_then_time_and_unpack() -> None:
    group = np.array([0, 0, 1, 1, 2])
    t = np.array([5, 1_700_000_000_000, 0, 3, 1_700_000_000_000])
    key = packed(group, t)
    assert (np.diff(key) > 0).all()  # already in (machine, time) order, so strictly increasing
    assert (key >> KEY_BITS).tolist() == group.tolist() and (key & (KEY_SPAN - 1)).tolist() == t.tolist()


def test_windows_never_reach_into_another_machine() -> None:
    group = np.array([0, 0, 0, 1, 1])
    t = np.array([0, 1000, 5000, 1000, 1500])
    lo, hi = window_bounds(group, t, 1000)
    assert lo.tolist() == [0, 0, 2, 3, 3] and hi.tolist() == [2, 2, 3, 5, 5]


def _samples(rng: np.random.Generator, n: int, machines: int, span_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of ``machines`` machines at distinct random times within ``span_ms``, sorted by (machine, t)."""
    group = np.sort(rng.integers(0, machines, n))
    t = np.zeros(n, np.int64)
    for g in range(machines):
        own = group == g
        t[own] = np.sort(rng.choice(span_ms, own.sum(), replace=False))
    return group, t


def test_window_median_is_the_exact_nan_median_of_each_window() -> None:
    rng = np.random.default_rng(7)
    n = 500
    group, t = _samples(rng, n, 4, 100_000)
    values = rng.normal(size=n)
    values[rng.random(n) < 0.2] = np.nan
    lo, hi = window_bounds(group, t, 3_000)
    got = window_median(lo, hi, values)
    want = np.array([np.nanmedian(values[a:b]) if np.isfinite(values[a:b]).any() else np.nan
                     for a, b in zip(lo, hi, strict=True)])
    np.testing.assert_array_equal(got, want)
    at = rng.random(n) < 0.3
    np.testing.assert_array_equal(window_median(lo, hi, values, at), np.where(at, want, np.nan))
    assert len(window_median(lo[:0], hi[:0], values[:0])) == 0


def test_moved_median_moves_each_usable_neighbour_to_the_samples_time() -> None:
    rng = np.random.default_rng(11)
    n = 400
    group, t = _samples(rng, n, 3, 2_000_000)
    coord = rng.normal(0, 50, n)
    velocity = rng.normal(0, 5, n)
    usable = rng.random(n) > 0.5
    lo, hi = window_bounds(group, t, 15_000)  # a few values per window: odd and even counts, some none usable
    want = np.full(n, np.nan)
    for i in range(n):
        j = np.arange(lo[i], hi[i])[usable[lo[i]:hi[i]]]
        if len(j):
            want[i] = np.median(coord[j] + velocity[i] * (t[i] - t[j]) / 1000.0)
    np.testing.assert_array_equal(moved_median(lo, hi, t, coord, velocity, usable), want)
    assert np.isnan(want).any() and np.isfinite(want).any()


def test_after_tail_takes_only_new_rows_past_each_machines_carried_tail() -> None:
    carried = pd.DataFrame({"machine_id": ["A", "A", "B"], "t": [10, 20, 15], "new": False})
    new = pd.DataFrame({"machine_id": ["B", "A", "A", "C", "B", "C"], "t": [15, 5, 30, 7, 16, 7], "new": True})
    rows = after_tail(carried, new)
    assert list(zip(rows["machine_id"], rows["t"], rows["new"], strict=True)) == [
        ("A", 10, False), ("A", 20, False), ("A", 30, True), ("B", 15, False), ("B", 16, True), ("C", 7, True)]
    pd.testing.assert_frame_equal(after_tail(None, new), after_tail(new.iloc[0:0], new))
