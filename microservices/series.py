"""Per-machine time series, vectorised: (machine, time) packed into one sortable integer, windows over it.

Services keep samples of many machines in one array sorted by (machine, time) with integer-millisecond
times. Packing both into one int64 key lets one ``np.searchsorted`` find every sample's window among its
own machine's samples, and a window median picks exact values (no interpolation, no running sums), so
results never depend on how the samples were split into batches. Shared by the built-in services
through the SDK package: no service imports another for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

KEY_BITS = 43
KEY_SPAN = np.int64(1) << np.int64(KEY_BITS)  # ms; > 278 years, so (group, t) packs into one sortable int64
ROW_BLOCK = 32_768  # rows per neighbour matrix block: bounds memory at high rates


def packed(group: np.ndarray, t: np.ndarray) -> np.ndarray:
    """One sortable int64 per sample: its group (machine or run code, >= 0) above its time in ms (>= 0)."""
    return np.asarray(group).astype(np.int64) * KEY_SPAN + np.asarray(t).astype(np.int64)


def window_bounds(group: np.ndarray, t: np.ndarray, half_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """For each sample, the index range [lo, hi) of samples of its group within +-half_ms."""
    key = packed(group, t)
    lo = np.searchsorted(key, key - half_ms, side="left")
    hi = np.searchsorted(key, key + half_ms, side="right")
    return lo, hi


def _masked_median(values: np.ndarray) -> np.ndarray:
    """Row-wise median ignoring NaN (exact selection, so results never depend on batch boundaries)."""
    ordered = np.sort(values, axis=1)  # NaN sort last
    count = np.count_nonzero(~np.isnan(values), axis=1)
    rows = np.arange(len(values))
    lower = ordered[rows, np.maximum(count - 1, 0) // 2]
    upper = ordered[rows, count // 2 - (count == 0)]
    return np.where(count > 0, (lower + upper) / 2, np.nan)


def window_median(lo: np.ndarray, hi: np.ndarray, value_of: Any, n: int) -> np.ndarray:
    """Median over each sample's window of ``value_of(i, j)`` (arrays of row and neighbour indices; NaN = skip)."""
    out = np.full(n, np.nan)
    if n == 0:
        return out
    index = np.arange(n)
    reach = int(max((index - lo).max(), (hi - 1 - index).max(), 0))
    offsets = np.arange(-reach, reach + 1)
    for start in range(0, n, ROW_BLOCK):
        rows = index[start:start + ROW_BLOCK]
        j = rows[:, None] + offsets[None, :]
        valid = (j >= lo[rows, None]) & (j < hi[rows, None])
        j = np.clip(j, 0, n - 1)
        values = value_of(np.broadcast_to(rows[:, None], j.shape), j)
        out[rows] = _masked_median(np.where(valid, values, np.nan))
    return out


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
