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

STATE_SIZE = 1 + 4 + 16 + 1  # time (ms), x y vx vy, covariance (row-major), fixes rejected since (ms; -1: none)
CHI2_2DOF_99 = 9.21
CHI2_2DOF_999 = 13.82
INITIAL_SPEED_SIGMA_MS = 15.0  # a machine's first fix says nothing about its velocity: about the fastest haul truck


def kalman_track(group: np.ndarray, t: np.ndarray, rows: np.ndarray, zx: np.ndarray, zy: np.ndarray,
                 position_sigma_m: np.ndarray, vx: np.ndarray, vy: np.ndarray, velocity_sigma_ms: np.ndarray,
                 velocity_trusted: np.ndarray, machines: list[str], carried: dict[str, list[float]],
                 accel_sigma_ms2: float, jump_gate_m: float, max_jump_s: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, list[float]]]:
    """Filtered x, y, vx, vy and the position's standard error (m per axis) at each of ``rows`` (indices into the
    per-sample arrays, grouped by machine in time order), and every machine's carried filter after its last row.

    Measurements per sample: the fix (zx, zy) with ``position_sigma_m`` per axis (NaN: no fix), and a velocity
    (vx, vy) with ``velocity_sigma_ms`` per axis (NaN: none), used where ``velocity_trusted`` and otherwise only
    where it agrees with the filter's own velocity (within the 99 % bound of both errors); where it does not, the
    filter's velocity is made as uncertain as the disagreement, so the fixes steer it (a sharp turn) and a dead
    compass reading 0 while the truck drives east costs precision, not the track. ``carried`` maps a machine
    name (``machines`` indexes them by ``group``) to its filter after its previous samples.

    GNSS jumps (tens of metres for seconds) are fixes further than ``jump_gate_m`` from the filter's prediction
    and outside its 99.9 % bound: not used. A machine whose fixes stay off for more than ``max_jump_s`` is where
    they say (the filter restarts there): a jump is shorter. ``max_jump_s`` 0: every fix is used.
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
                position_sigma_m[rows], vx[rows], vy[rows], velocity_sigma_ms[rows],
                np.asarray(velocity_trusted, np.bool_)[rows], state, has,
                float(accel_sigma_ms2), float(jump_gate_m), int(round(max_jump_s * 1000)))
    kept = dict(carried)
    touched = np.unique(np.asarray(group, np.int64)[rows])
    for code in touched.tolist():
        if has[code]:
            kept[machines[code]] = state[code].tolist()
    return out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4], kept


def forget(carried: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    """The carried filters of the machines still tracked (those with a tail)."""
    return {m: s for m, s in carried.items() if m in keep}


@numba.njit(cache=True, nogil=True)
def _walk(group, t, zx, zy, sp, vx, vy, sv, trusted, state, has, accel_sigma, gate_m, max_jump_ms
          ):  # pragma: no cover - compiled
    """Predict to each sample, update with its fix (unless a jump) and velocity; rows grouped by machine in time
    order."""
    n = len(t)
    out = np.full((n, 5), np.nan)
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
            p = s[5:21].reshape(4, 4)
            p[:, :] = 0.0
            p[0, 0] = p[1, 1] = sp[i] * sp[i]
            v0 = sv[i] if vel else INITIAL_SPEED_SIGMA_MS
            p[2, 2] = p[3, 3] = v0 * v0
            s[STATE_SIZE - 1] = -1.0
            has[g] = True
            out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4] = s[1], s[2], s[3], s[4], sp[i]
            continue
        dt = (t[i] - s[0]) / 1000.0
        if dt < 0:  # an older sample than the filter's (not expected: tails keep time order)
            continue
        x = s[1:5].copy()
        p = s[5:21].reshape(4, 4).copy()
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
        manoeuvre = False
        if vel and not _agrees(x, p, vx[i], vy[i], sv[i]):
            # the machine's own velocity disagrees with the filter's: a manoeuvre the constant-velocity model did
            # not foresee (a sharp turn) or, unless trusted, a sensor to ignore; either way the filter's velocity
            # is uncertain by as much, its position by what that did over the step, and this fix is not a jump
            # but where the machine went
            du, dv = vx[i] - x[2], vy[i] - x[3]
            p[2, 2] += du * du
            p[3, 3] += dv * dv
            p[0, 0] += du * du * dt * dt
            p[1, 1] += dv * dv * dt * dt
            vel = trusted[i]
            manoeuvre = True
        if fix and not manoeuvre and max_jump_ms > 0 and _is_jump(x, p, zx[i], zy[i], sp[i], gate_m):
            if s[STATE_SIZE - 1] < 0:
                s[STATE_SIZE - 1] = t[i]
            if t[i] - s[STATE_SIZE - 1] <= max_jump_ms:
                fix = False
            else:  # off for longer than a jump lasts: the machine is where its fixes say
                x[0], x[1] = zx[i], zy[i]
                p[0, :] = p[1, :] = p[:, 0] = p[:, 1] = 0.0
                p[0, 0] = p[1, 1] = sp[i] * sp[i]
                fix = False
                s[STATE_SIZE - 1] = -1.0
        elif fix:
            s[STATE_SIZE - 1] = -1.0
        if fix:
            x, p = _update_pair(x, p, 0, zx[i], zy[i], sp[i])
        if vel:
            x, p = _update_pair(x, p, 2, vx[i], vy[i], sv[i])
        s[0] = t[i]
        s[1:5] = x
        s[5:21] = p.ravel()
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = x[0], x[1], x[2], x[3]
        out[i, 4] = np.sqrt(max((p[0, 0] + p[1, 1]) / 2.0, 0.0))
    return out


@numba.njit(cache=True, nogil=True)
def _is_jump(x, p, zx, zy, sigma, gate_m):  # pragma: no cover - compiled
    """The fix is further than ``gate_m`` from the prediction and outside its 99.9 % bound."""
    d = np.array([zx - x[0], zy - x[1]])
    if np.sqrt(d @ d) <= gate_m:
        return False
    s = p[0:2, 0:2].copy()
    s[0, 0] += sigma * sigma
    s[1, 1] += sigma * sigma
    return d @ np.linalg.solve(s, d) > CHI2_2DOF_999


@numba.njit(cache=True, nogil=True)
def _agrees(x, p, vx, vy, sigma):  # pragma: no cover - compiled
    """The measured velocity is within the 99 % bound (chi-square, 2 degrees of freedom) of the filter's."""
    s = p[2:4, 2:4].copy()
    s[0, 0] += sigma * sigma
    s[1, 1] += sigma * sigma
    d = np.array([vx - x[2], vy - x[3]])
    return d @ np.linalg.solve(s, d) <= CHI2_2DOF_99


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
                 np.zeros(2), np.zeros(2), one, np.zeros(2, np.bool_), ["m"], {}, 1.0, 10.0, 6.0)


_compile()
