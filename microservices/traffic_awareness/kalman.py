"""Each machine's position and velocity from a constant-velocity Kalman filter, carried from step to step.

Why a filter: closing speed and time to collision difference positions, and a standalone receiver's fixes
scatter by metres per axis from one second to the next, so a velocity from consecutive fixes reads a parked
truck at 10 km/h and two trucks passing in their lanes as closing in. The filter weighs each fix by the
machine's receiver noise (centimetres for RTK: the fixes are followed; metres for a standalone receiver: they
are averaged) against a physical limit on how fast a machine can change its velocity, and takes the machine's
own speed and heading as a velocity measurement where they are trusted (a machine that says it stands has
zero velocity, which pins its position to the mean of its fixes).

Why compiled: the filter is a walk along each machine's samples in time order. It is carried per machine
(time, state, covariance, as exact JSON floats), so samples split into batches anywhere give the same result.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

STATE_SIZE = 1 + 4 + 16  # time (ms), x y vx vy, covariance (row-major)
INITIAL_SPEED_SIGMA_MS = 15.0  # a machine's first fix says nothing about its velocity: about the fastest haul truck


def kalman_track(group: np.ndarray, t: np.ndarray, rows: np.ndarray, zx: np.ndarray, zy: np.ndarray,
                 position_sigma_m: np.ndarray, vx: np.ndarray, vy: np.ndarray, velocity_sigma_ms: np.ndarray,
                 machines: list[str], carried: dict[str, list[float]], accel_sigma_ms2: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, list[float]]]:
    """Filtered x, y, vx, vy at each of ``rows`` (indices into the per-sample arrays, grouped by machine in time
    order) and every machine's carried filter after its last row.

    Measurements per sample: the fix (zx, zy) with ``position_sigma_m`` per axis (NaN: no fix), and a velocity
    (vx, vy) with ``velocity_sigma_ms`` per axis (NaN: none). ``carried`` maps a machine name (``machines``
    indexes them by ``group``) to its filter after its previous samples.
    """
    n_machines = len(machines)
    state = np.zeros((n_machines, STATE_SIZE))
    has = np.zeros(n_machines, np.bool_)
    for code, machine in enumerate(machines):
        saved = carried.get(machine)
        if saved is not None and len(saved) == STATE_SIZE:
            state[code] = saved
            has[code] = True
    rows = np.asarray(rows, np.int64)
    out = _walk(np.asarray(group, np.int64)[rows], np.asarray(t, np.int64)[rows], zx[rows], zy[rows],
                position_sigma_m[rows], vx[rows], vy[rows], velocity_sigma_ms[rows], state, has,
                float(accel_sigma_ms2))
    kept = dict(carried)
    touched = np.unique(np.asarray(group, np.int64)[rows])
    for code in touched.tolist():
        if has[code]:
            kept[machines[code]] = state[code].tolist()
    return out[:, 0], out[:, 1], out[:, 2], out[:, 3], kept


def forget(carried: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    """The carried filters of the machines still tracked (those with a tail)."""
    return {m: s for m, s in carried.items() if m in keep}


@numba.njit(cache=True, nogil=True)
def _walk(group, t, zx, zy, sp, vx, vy, sv, state, has, accel_sigma):  # pragma: no cover - compiled
    """Predict to each sample, update with its fix and velocity; rows grouped by machine in time order."""
    n = len(t)
    out = np.full((n, 4), np.nan)
    q = accel_sigma * accel_sigma
    for i in range(n):
        g = group[i]
        fix = np.isfinite(zx[i]) and np.isfinite(zy[i]) and np.isfinite(sp[i])
        vel = np.isfinite(vx[i]) and np.isfinite(vy[i]) and np.isfinite(sv[i])
        s = state[g]
        if not has[g]:
            if not fix:
                continue
            s[0] = t[i]
            s[1], s[2] = zx[i], zy[i]
            s[3], s[4] = (vx[i], vy[i]) if vel else (0.0, 0.0)
            p = s[5:].reshape(4, 4)
            p[:, :] = 0.0
            p[0, 0] = p[1, 1] = sp[i] * sp[i]
            v0 = sv[i] if vel else INITIAL_SPEED_SIGMA_MS
            p[2, 2] = p[3, 3] = v0 * v0
            has[g] = True
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = s[1], s[2], s[3], s[4]
            continue
        dt = (t[i] - s[0]) / 1000.0
        if dt < 0:  # an older sample than the filter's (not expected: tails keep time order)
            continue
        x = s[1:5].copy()
        p = s[5:].reshape(4, 4).copy()
        if dt > 0:
            f = np.eye(4)
            f[0, 2] = f[1, 3] = dt
            x = f @ x
            p = f @ p @ f.T
            d2, d3, d4 = dt * dt, dt * dt * dt / 2.0, dt * dt * dt * dt / 4.0
            for a in range(2):
                p[a, a] += q * d4
                p[a, a + 2] += q * d3
                p[a + 2, a] += q * d3
                p[a + 2, a + 2] += q * d2
        if fix:
            x, p = _update_pair(x, p, 0, zx[i], zy[i], sp[i])
        if vel:
            x, p = _update_pair(x, p, 2, vx[i], vy[i], sv[i])
        s[0] = t[i]
        s[1:5] = x
        s[5:] = p.ravel()
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = x[0], x[1], x[2], x[3]
    return out


@numba.njit(cache=True, nogil=True)
def _update_pair(x, p, first, z0, z1, sigma):  # pragma: no cover - compiled
    """Update with a measurement of state components ``first`` and ``first + 1`` (position or velocity), each with
    noise ``sigma``."""
    h = np.zeros((2, 4))
    h[0, first] = 1.0
    h[1, first + 1] = 1.0
    innovation = np.array([z0 - x[first], z1 - x[first + 1]])
    s = h @ p @ h.T
    s[0, 0] += sigma * sigma
    s[1, 1] += sigma * sigma
    k = p @ h.T @ np.linalg.inv(s)
    x = x + k @ innovation
    ikh = np.eye(4) - k @ h
    p = ikh @ p @ ikh.T
    r = np.eye(2) * sigma * sigma
    p = p + k @ r @ k.T  # Joseph form: stays symmetric and positive through thousands of steps
    return x, p


def _compile() -> None:
    """Compile the walk (or load it from numba's cache) at import, not in the middle of a live stream."""
    one = np.ones(2)
    kalman_track(np.zeros(2, np.int64), np.array([0, 1000]), np.arange(2), np.zeros(2), np.zeros(2), one,
                 np.zeros(2), np.zeros(2), one, ["m"], {}, 1.0)


_compile()
