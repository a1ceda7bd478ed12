"""Per-machine time series, vectorised: (machine, time) packed into one sortable integer, windows over it.

Services keep samples of many machines in one array sorted by (machine, time) with integer-millisecond
times. Packing both into one int64 key lets one ``np.searchsorted`` find every sample's window among its
own machine's samples, and a window median picks exact values (no interpolation, no running sums), so
results never depend on how the samples were split into batches. The medians are compiled (numba, free of
the GIL): one small sort per window instead of numpy's padded matrix of neighbours. Shared by the built-in
services through the SDK package: no service imports another for it.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pandas as pd

KEY_BITS = 43
KEY_SPAN = np.int64(1) << np.int64(KEY_BITS)  # ms; > 278 years, so (group, t) packs into one sortable int64


def packed(group: np.ndarray, t: np.ndarray) -> np.ndarray:
    """One sortable int64 per sample: its group (machine or run code, >= 0) above its time in ms (>= 0)."""
    return np.asarray(group).astype(np.int64) * KEY_SPAN + np.asarray(t).astype(np.int64)


def window_bounds(group: np.ndarray, t: np.ndarray, half_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """For each sample, the index range [lo, hi) of samples of its group within +-half_ms."""
    key = packed(group, t)
    lo = np.searchsorted(key, key - half_ms, side="left")
    hi = np.searchsorted(key, key + half_ms, side="right")
    return lo, hi


@numba.njit(cache=True, nogil=True)
def _select(buffer: np.ndarray, count: int, kth: int) -> float:  # pragma: no cover - compiled
    """The ``kth`` smallest of ``buffer[:count]`` (Hoare's quickselect, in place: smaller values end up before
    ``kth``, larger after)."""
    left, right = 0, count - 1
    while left < right:
        pivot = buffer[(left + right) // 2]
        i, j = left, right
        while i <= j:
            while buffer[i] < pivot:
                i += 1
            while buffer[j] > pivot:
                j -= 1
            if i <= j:
                buffer[i], buffer[j] = buffer[j], buffer[i]
                i += 1
                j -= 1
        if kth <= j:
            right = j
        elif kth >= i:
            left = i
        else:
            break
    return buffer[kth]


@numba.njit(cache=True, nogil=True)
def _median_in_place(buffer: np.ndarray, count: int) -> float:  # pragma: no cover - compiled
    """Median of ``buffer[:count]`` (reordered), the mean of the middle two as numpy's; NaN when empty."""
    if count == 0:
        return np.nan
    lower = _select(buffer, count, (count - 1) // 2)
    upper = lower if count % 2 else buffer[count // 2:count].min()
    return (lower + upper) / 2.0


@numba.njit(cache=True, nogil=True)
def _window_medians(lo: np.ndarray, hi: np.ndarray, rows: np.ndarray,
                    values: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.full(len(values), np.nan)
    buffer = np.empty(max(1, int((hi[rows] - lo[rows]).max())) if len(rows) else 1)
    for i in rows:
        count = 0
        for j in range(lo[i], hi[i]):
            if not np.isnan(values[j]):
                buffer[count] = values[j]
                count += 1
        out[i] = _median_in_place(buffer, count)
    return out


@numba.njit(cache=True, nogil=True)
def _moved_medians(lo: np.ndarray, hi: np.ndarray, t: np.ndarray, coord: np.ndarray, velocity: np.ndarray,
                   usable: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n = len(t)
    out = np.full(n, np.nan)
    buffer = np.empty(max(1, int((hi - lo).max())) if n else 1)
    for i in range(n):
        count = 0
        for j in range(lo[i], hi[i]):
            if usable[j]:
                moved = coord[j] + velocity[i] * (t[i] - t[j]) / 1000.0
                if not np.isnan(moved):
                    buffer[count] = moved
                    count += 1
        out[i] = _median_in_place(buffer, count)
    return out


def window_median(lo: np.ndarray, hi: np.ndarray, values: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """Median of ``values[lo[i]:hi[i]]`` for each sample i (NaN skipped; NaN when none); with ``at`` (a mask)
    only at those samples, NaN elsewhere. Compiled, and free of the GIL, so runner threads overlap it."""
    values = np.asarray(values, dtype=np.float64)
    rows = np.arange(len(values)) if at is None else np.flatnonzero(at)
    return _window_medians(np.asarray(lo, np.int64), np.asarray(hi, np.int64), rows, values)


def moved_median(lo: np.ndarray, hi: np.ndarray, t: np.ndarray, coord: np.ndarray, velocity: np.ndarray,
                 usable: np.ndarray) -> np.ndarray:
    """For each sample i, the median over its window's usable neighbours j of ``coord[j]`` moved to i's time at
    i's velocity (``coord[j] + velocity[i] * (t[i] - t[j]) / 1000``, t in ms): a motion-compensated median."""
    return _moved_medians(np.asarray(lo, np.int64), np.asarray(hi, np.int64), np.asarray(t, np.int64),
                          np.asarray(coord, np.float64), np.asarray(velocity, np.float64),
                          np.asarray(usable, np.bool_))


def epoch_ms(ts: pd.Series) -> np.ndarray:
    """Epoch milliseconds of tz-aware timestamps (the services' integer time axis)."""
    return ((ts.dt.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(
        dtype=np.int64)


def stamps(ms: Any) -> Any:
    """Epoch milliseconds as UTC timestamps (the output tables' time columns)."""
    return pd.to_datetime(ms, unit="ms", utc=True)


def json_floats(values: np.ndarray) -> list:
    """A float array as a JSON-safe list for a service's state (NaN and inf as None: jsonb holds neither)."""
    array = np.asarray(values, dtype=float)
    out = array.tolist()
    if not np.isfinite(array).all():
        out = [v if np.isfinite(v) else None for v in out]
    return out


def after_tail(carried: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """The tail a step carried and the new rows after each machine's newest carried one (``machine_id``, ``t``),
    once each, sorted by machine and time: a sample the tail already holds is not processed twice."""
    if carried is not None and not carried.empty:
        newest = new["machine_id"].map(carried.groupby("machine_id")["t"].max())
        new = pd.concat([carried, new[newest.isna() | (new["t"] > newest)]], ignore_index=True)
    rows = new.drop_duplicates(["machine_id", "t"], keep="first")
    return rows.sort_values(["machine_id", "t"], kind="stable").reset_index(drop=True)
