"""Device clocks corrected against arrival: a sample cannot have been taken after ingest received it.

A tracker whose clock runs ahead (set by hand, lost its GNSS time, drifting) stamps every sample late: zone
visits, encounters and cycles come out shifted by the clock's error. Ingest stores each sample's arrival
(``received_at``, its own synchronised clock), so lead = ``ts - received_at`` = the clock's offset - the
delivery delay, and the offset is at least every lead. Where a machine's samples run ahead of arrival, each is
moved back by the upper envelope of its machine's leads: its own, and its neighbours' less what a clock can
drift in between (``MAX_DRIFT``), so the samples of a buffered upload borrow the offset from the newest of
them, which arrived with the least delay. A lead its neighbours do not support (one corrupt timestamp) counts
only up to theirs plus the sampling interval. Applied by the runner (and the test harness) to every service's
batch, so no service deals with it; the health check (data-quality) reads the devices' own timestamps to
judge the clocks (``Service.device_time``).

Only leads above zero are taken off. A clock behind looks exactly like a late delivery (a tracker that
buffered while out of coverage) and is left alone, as are replays of old data (arrival long after).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_DRIFT = 0.02  # s/s, 72 s/h (a quartz clock drifts ~1 s a day): how far a neighbour's offset may differ


def telemetry_for(service: object, telemetry: pd.DataFrame) -> pd.DataFrame:
    """The telemetry a service is given: clocks corrected, unless the service judges the devices' own time
    (``Service.device_time``, the health check)."""
    return telemetry if getattr(service, "device_time", False) else corrected_clocks(telemetry)


def corrected_clocks(telemetry: pd.DataFrame) -> pd.DataFrame:
    """``telemetry`` (sorted by machine, ts) with ``ts`` moved back by each device's lead over arrival where
    a clock runs ahead, the device's own time kept in ``device_ts``; unchanged (same frame) where none does."""
    if telemetry.empty or "received_at" not in telemetry or "ts" not in telemetry:
        return telemetry
    received = pd.to_datetime(telemetry["received_at"], utc=True)
    lead = (telemetry["ts"] - received).dt.total_seconds().to_numpy(float)
    if not np.nanmax(lead, initial=0.0) > 0:  # NaN (no arrival time) counts as no lead
        return telemetry
    machine = telemetry["machine_id"].to_numpy(object)
    ahead = np.isin(machine, pd.unique(machine[lead > 0]))
    rows = np.flatnonzero(ahead & np.isfinite(lead))
    correction = np.zeros(len(telemetry))
    correction[rows] = np.clip(offset_envelope(pd.factorize(machine[rows])[0],
                                               telemetry["ts"].to_numpy("datetime64[us]")[rows].astype(np.int64)
                                               / 1e6, lead[rows]), 0.0, None)
    out = telemetry.copy()
    out["device_ts"] = telemetry["ts"]
    out["ts"] = telemetry["ts"] - pd.to_timedelta(np.round(correction * 1e6), unit="us")
    # where a clock jumps, corrected times may step back a little: batches stay in time order
    sort = [c for c in ("machine_id", "ts", "seq") if c in out]
    return out.sort_values(sort, kind="stable").reset_index(drop=True)


def offset_envelope(group: np.ndarray, t: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """Per sample (sorted by group, device time ``t`` in s): the largest of the group's leads, each less
    ``MAX_DRIFT`` per second away, after each lead is capped at its neighbours' plus the sampling interval."""
    n = len(t)
    same_prev = np.r_[False, group[1:] == group[:-1]]
    same_next = np.r_[group[1:] == group[:-1], False]
    prev = np.where(same_prev, np.r_[-np.inf, lead[:-1]], -np.inf)
    nxt = np.where(same_next, np.r_[lead[1:], -np.inf], -np.inf)
    alone = ~same_prev & ~same_next
    gaps = np.diff(t)[same_next[:-1]] if n > 1 else np.zeros(0)
    interval = max(1.0, float(np.median(gaps))) if len(gaps) else 1.0
    capped = np.where(alone, lead, np.minimum(lead, np.maximum(prev, nxt) + interval))
    # max_j (lead_j - d |t_i - t_j|) in two passes: a running maximum of lead + d t forward, of lead - d t back
    d = MAX_DRIFT
    t0 = t - np.where(np.isfinite(t), t, 0).min() if n else t
    frame = pd.DataFrame({"g": group, "up": capped + d * t0, "down": capped - d * t0})
    forward = frame.groupby("g", sort=False)["up"].cummax().to_numpy() - d * t0
    back = frame.iloc[::-1].groupby("g", sort=False)["down"].cummax().to_numpy()[::-1] + d * t0
    return np.maximum(forward, back)
