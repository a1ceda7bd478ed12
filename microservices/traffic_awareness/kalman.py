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

import numba
import numpy as np

# time (ms); per axis (east, north) position, velocity and their covariance (pp, pv, vv); fixes rejected since
# (ms; -1: none)
STATE_SIZE = 1 + 2 * 5 + 1
REJECTED = STATE_SIZE - 1
CHI2_2DOF_99 = 9.21
CHI2_2DOF_999 = 13.82
# x, y, vx, vy, position and velocity standard errors per row; each machine's filter after its last row
FilteredTrack = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, list[float]]]
INITIAL_SPEED_SIGMA_MS = 15.0  # a machine's first fix says nothing about its velocity: about the fastest haul truck


def kalman_track(group: np.ndarray, t: np.ndarray, rows: np.ndarray, zx: np.ndarray, zy: np.ndarray,
                 position_sigma_m: np.ndarray, vx: np.ndarray, vy: np.ndarray, velocity_sigma_ms: np.ndarray,
                 velocity_trusted: np.ndarray, machines: list[str], carried: dict[str, list[float]],
                 accel_sigma_ms2: float, jump_gate_m: float, max_jump_s: float
                 ) -> FilteredTrack:
    """Filtered x, y, vx, vy, the position's and the velocity's standard errors (m and m/s per axis) at each of
    ``rows`` (indices into the per-sample arrays, grouped by machine in time order), and every machine's carried
    filter after its last row.

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
    return out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4], out[:, 5], kept


@numba.njit(cache=True, nogil=True)
def _walk(group, t, zx, zy, sp, vx, vy, sv, trusted, state, has, accel_sigma, gate_m, max_jump_ms
          ):  # pragma: no cover - compiled
    """Predict to each sample, update with its fix (unless a jump) and velocity; rows grouped by machine in time
    order. East and north are independent filters (every measurement and the process noise are per axis), so each
    is two states in scalars: no matrices to allocate per sample."""
    n = len(t)
    out = np.full((n, 6), np.nan)
    q = accel_sigma * accel_sigma
    z = np.empty(2)
    v = np.empty(2)
    for i in range(n):
        g = group[i]
        fix = np.isfinite(zx[i]) and np.isfinite(zy[i]) and np.isfinite(sp[i])
        vel = np.isfinite(vx[i]) and np.isfinite(vy[i]) and np.isfinite(sv[i])
        s = state[g]
        z[0], z[1], v[0], v[1] = zx[i], zy[i], vx[i], vy[i]
        rp, rv = sp[i] * sp[i], sv[i] * sv[i]
        if not has[g]:
            if not fix:
                continue
            s[0] = t[i]
            v0 = rv if vel else INITIAL_SPEED_SIGMA_MS * INITIAL_SPEED_SIGMA_MS
            for a in range(2):
                b = 1 + 5 * a
                s[b], s[b + 1] = z[a], (v[a] if vel else 0.0)
                s[b + 2], s[b + 3], s[b + 4] = rp, 0.0, v0
            s[REJECTED] = -1.0
            has[g] = True
            _output(out, i, s)
            continue
        dt = (t[i] - s[0]) / 1000.0
        if dt < 0:  # an older sample than the filter's (not expected: tails keep time order)
            continue
        for a in range(2):  # predict
            b = 1 + 5 * a
            s[b] += s[b + 1] * dt
            s[b + 2] += 2 * dt * s[b + 3] + dt * dt * s[b + 4] + q * dt ** 4 / 4.0
            s[b + 3] += dt * s[b + 4] + q * dt ** 3 / 2.0
            s[b + 4] += q * dt * dt
        manoeuvre = False
        if vel and _distance2(s, 1, v, rv) > CHI2_2DOF_99:
            # the machine's own velocity disagrees with the filter's: a manoeuvre the constant-velocity model did
            # not foresee (a sharp turn) or, unless trusted, a sensor to ignore; either way the filter's velocity
            # is uncertain by as much, its position by what that did over the step, and this fix is not a jump
            # but where the machine went
            for a in range(2):
                b = 1 + 5 * a
                d2 = (v[a] - s[b + 1]) ** 2
                s[b + 4] += d2
                s[b + 2] += d2 * dt * dt
            vel = trusted[i]
            manoeuvre = True
        if fix and not manoeuvre and max_jump_ms > 0 and _is_jump(s, z, rp, gate_m):
            if s[REJECTED] < 0:
                s[REJECTED] = t[i]
            if t[i] - s[REJECTED] > max_jump_ms:  # off for longer than a jump lasts: it is where its fixes say
                for a in range(2):
                    b = 1 + 5 * a
                    s[b], s[b + 2], s[b + 3] = z[a], rp, 0.0
                s[REJECTED] = -1.0
            fix = False
        elif fix:
            s[REJECTED] = -1.0
        for a in range(2):
            b = 1 + 5 * a
            if fix:  # position measured
                k0, k1 = s[b + 2] / (s[b + 2] + rp), s[b + 3] / (s[b + 2] + rp)
                e = z[a] - s[b]
                s[b], s[b + 1] = s[b] + k0 * e, s[b + 1] + k1 * e
                s[b + 4] -= k1 * s[b + 3]
                s[b + 2] *= 1 - k0
                s[b + 3] *= 1 - k0
            if vel:  # velocity measured
                k0, k1 = s[b + 3] / (s[b + 4] + rv), s[b + 4] / (s[b + 4] + rv)
                e = v[a] - s[b + 1]
                s[b], s[b + 1] = s[b] + k0 * e, s[b + 1] + k1 * e
                s[b + 2] -= k0 * s[b + 3]
                s[b + 3] *= 1 - k1
                s[b + 4] *= 1 - k1
        s[0] = t[i]
        _output(out, i, s)
    return out


@numba.njit(cache=True, nogil=True)
def _output(out, i, s):  # pragma: no cover - compiled
    """Row i: x, y, vx, vy and the position's and the velocity's standard errors per axis."""
    out[i, 0], out[i, 1], out[i, 2], out[i, 3] = s[1], s[6], s[2], s[7]
    out[i, 4] = np.sqrt(max((s[3] + s[8]) / 2.0, 0.0))
    out[i, 5] = np.sqrt(max((s[5] + s[10]) / 2.0, 0.0))


@numba.njit(cache=True, nogil=True)
def _distance2(s, offset, m, r):  # pragma: no cover - compiled
    """Squared Mahalanobis distance of a measurement ``m`` (east, north) of state ``offset`` (0: position,
    1: velocity) with noise variance ``r`` per axis from the filter's estimate."""
    total = 0.0
    for a in range(2):
        b = 1 + 5 * a
        variance = (s[b + 2] if offset == 0 else s[b + 4]) + r
        total += (m[a] - s[b + offset]) ** 2 / variance
    return total


@numba.njit(cache=True, nogil=True)
def _is_jump(s, z, r, gate_m):  # pragma: no cover - compiled
    """The fix is further than ``gate_m`` from the prediction and outside its 99.9 % bound."""
    if np.hypot(z[0] - s[1], z[1] - s[6]) <= gate_m:
        return False
    return _distance2(s, 0, z, r) > CHI2_2DOF_999


def _compile() -> None:
    """Compile the walk (or load it from numba's cache) at import, not in the middle of a live stream."""
    one = np.ones(2)
    kalman_track(np.zeros(2, np.int64), np.array([0, 1000]), np.arange(2), np.zeros(2), np.zeros(2), one,
                 np.zeros(2), np.zeros(2), one, np.zeros(2, np.bool_), ["m"], {}, 1.0, 10.0, 6.0)


_compile()
