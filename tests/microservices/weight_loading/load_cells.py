"""Real load cells, made from the simulator's payload readings: what a weighing system on a real hauler sends.

Why: the simulator's payload is the true load plus white noise and body bounce, read anew every sample. A real
on-board weighing system (issue #30) reports in 100 kg steps, updates at its own rate (so consecutive samples
repeat), filters its strain gauges (so it lags the last pass by seconds), drifts a few per cent while the truck
stands, and sends sentinels (-99, other negative values) for "no reading". Tests of weight loading run the
service on these readings until the simulator models them itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def real_load_cell(telemetry: pd.DataFrame, rated: dict[str, float], *, seed: int = 0, step_kg: float = 100.0,
                   update_s: float = 2.0, lag_s: float = 4.0, drift_frac: float = 0.02, drift_s: float = 120.0,
                   sentinel_share: float = 0.01) -> pd.DataFrame:
    """The telemetry with each hauler's ``payload_kg`` as a real load cell reports it.

    Per hauler, in time order: a first-order lag of ``lag_s`` (the gauges' filter), a drift growing to
    ``drift_frac`` of rated while standing (over about ``drift_s``, back to zero once moving), sampled and held
    every ``update_s`` (the weighing's own update rate), quantised to ``step_kg``, and ``sentinel_share`` of the
    readings replaced by -99 or another negative sentinel. ``rated``: the haulers to transform, with their rated
    payload (kg).
    """
    rng = np.random.default_rng(seed)
    out = telemetry.sort_values(["machine_id", "ts", "seq"], kind="stable").reset_index(drop=True)
    payload = out["payload_kg"].to_numpy(float).copy()
    speed = out["speed_kmh"].to_numpy(float)
    t = out["ts"].to_numpy("datetime64[ns]").astype(np.int64) / 1e9
    machine = out["machine_id"].to_numpy()
    for name, rated_kg in sorted(rated.items()):
        rows = np.flatnonzero(machine == name)
        if len(rows) == 0:
            continue
        direction = rng.choice([-1.0, 1.0])
        filtered, drift, held, held_at, last_t = np.nan, 0.0, np.nan, -np.inf, None
        for i in rows:
            raw = payload[i]
            dt = 1.0 if last_t is None else max(t[i] - last_t, 0.0)
            last_t = t[i]
            if np.isfinite(raw):
                filtered = raw if not np.isfinite(filtered) else filtered + (1 - np.exp(-dt / lag_s)) * (raw - filtered)
            standing = not np.isfinite(speed[i]) or speed[i] < 1.0
            if standing:
                drift += direction * drift_frac * rated_kg * dt / drift_s
                drift = float(np.clip(drift, -drift_frac * rated_kg, drift_frac * rated_kg))
            else:
                drift, direction = 0.0, rng.choice([-1.0, 1.0])
            if t[i] - held_at >= update_s or not np.isfinite(held):
                held, held_at = filtered + drift, t[i]
            if not np.isfinite(raw):
                payload[i] = np.nan
                continue
            value = step_kg * np.round(max(held, 0.0) / step_kg) if np.isfinite(held) else np.nan
            if rng.random() < sentinel_share:
                value = -99.0 if rng.random() < 0.7 else -float(rng.integers(1, 30_000))
            payload[i] = value
    out["payload_kg"] = payload
    return out
