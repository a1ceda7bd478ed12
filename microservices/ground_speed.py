"""Speed over ground for services that need only speed: the reported speed while it agrees with the track,
else the track's.

Why a compiled kernel: a speed signal is checked at every sample against the step from the fix before (against
the track estimate where a sample has no step of its own: a repeat, a spike's edge, after a gap), and trusted
while at least ``speed_trust_share`` of the trust window's checks agreed (a GNSS jump spoils two steps, outvoted);
only where it is not trusted is the jump-filtered track velocity worked out (``motion.py``'s estimate: the median
of the steps that are no jump's edge). That is a walk along each machine's samples carrying short windows,
which numpy can only express as dozens of whole-array passes and merges with what the previous batch left; the
check must cost a service a small share of its rows per second in batches of every size (issue #18), so the walk
is one numba loop.

Deterministic across batch splits: each machine carries its newest fix, the steps of the track and predict
windows with their jump verdicts, and the checks of the trust window, exactly what the next samples read (as
packed arrays, ``microservices/packed.py``: a thousand machines' windows are tens of thousands of numbers, and
the state goes through JSON every step), so batches split anywhere give the same speeds.
"""

from __future__ import annotations

import functools
from typing import Any

import numba
import numpy as np

from microservices.motion import MotionSettings
from microservices.packed import pack, unpack

CARRY_VERSION = 8  # 8: arrays packed (microservices/packed.py)
MS_PER_S = 1000  # the walk's clock: samples' times in whole ms, as motion.py's windows
STEP_DECIMALS = 3  # steps in m/s to the mm/s, in the walk and in what it carries alike
DEFAULTS = MotionSettings()


def speed_over_ground(machine: np.ndarray, t_ms: np.ndarray, x: np.ndarray, y: np.ndarray, speed_kmh: np.ndarray,
                      carried: dict[str, Any], settings: MotionSettings | None = None
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Speed per sample (km/h; NaN where neither the report nor the track has one) and what to carry.

    Rows grouped by machine in time order (as a batch sorted by machine and time is); x, y in metres on any
    local plane (only steps count). A sample older than its machine's newest fix (a late delivery) keeps its
    reported speed: the track has moved past it.
    """
    machine = np.asarray(machine, object)
    n = len(machine)
    starts = np.flatnonzero(np.concatenate(([True], machine[1:] != machine[:-1]))) if n else np.zeros(0, np.int64)
    names = machine[starts].tolist()
    if len(set(names)) != len(names):  # not grouped by machine: group it (stable, so time order stays)
        order = np.argsort(np.unique(machine.astype(str), return_inverse=True)[1], kind="stable")
        out, kept = speed_over_ground(machine[order], np.asarray(t_ms)[order], np.asarray(x)[order],
                                      np.asarray(y)[order], np.asarray(speed_kmh)[order], carried, settings)
        back = np.empty(n)
        back[order] = out
        return back, kept
    runs = list(zip(names, starts.tolist(), [*starts[1:].tolist(), n], strict=True))
    return speeds_of_runs(runs, np.asarray(t_ms, np.int64) * 1_000_000, x, y, (1.0, 1.0), speed_kmh, carried,
                          settings)


def speeds_of_runs(runs: list[tuple[str, int, int]], t_ns: np.ndarray, x: np.ndarray, y: np.ndarray,
                   scale: tuple[float, float], speed_kmh: np.ndarray, carried: dict[str, Any],
                   settings: MotionSettings | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``speed_over_ground`` for the rows of ``runs`` (machine, start, stop: each machine's samples, in time
    order), the reported speed elsewhere; metres are x, y times ``scale`` (a site frame's ``metres_per_degree``
    takes longitude and latitude as they come, with no projected copy of the batch)."""
    s = settings or DEFAULTS
    if carried.get("v") != CARRY_VERSION:
        carried = {}
    names = [name for name, _, _ in runs]
    ids = carried.get("ids", [])
    slot_of = {name: i for i, name in enumerate(ids)}
    present = set(names)
    absent = [name not in present for name in ids]  # they carry on what they carried
    out, has, ints, floats = _walk(
        np.array([a for _, a, _ in runs], np.int64), np.array([b for _, _, b in runs], np.int64),
        np.asarray(t_ns, np.int64), np.asarray(x, float), np.asarray(y, float), np.asarray(speed_kmh, float),
        np.array([slot_of.get(name, -1) for name in names], np.int64), np.array(absent, np.bool_),
        unpack(carried.get("i"), np.int64), unpack(carried.get("f")), np.array(scale, float), _parameters(s))
    kept_ids = [name for name, h in zip(names, has.tolist(), strict=True) if h]
    kept_ids += [name for name, a in zip(ids, absent, strict=True) if a]
    return out, {"v": CARRY_VERSION, "ids": kept_ids, "i": pack(ints, np.int64), "f": pack(floats)}


# what each machine carries: its newest fix (time in ms, x, y), how many steps and checks, then all machines'
# steps (ms before the newest fix, velocity, jump verdict) and checks ((ms before the newest fix) * 2 + agreed);
# packed in two arrays, the integers and the floats, in this order
INTS = ("ft", "sn", "cn", "st", "so", "c")
FLOATS = ("fx", "fy", "sx", "sy")


def carried_arrays(carried: dict[str, Any]) -> dict[str, np.ndarray]:
    """What ``speeds_of_runs`` carried, as arrays by name (INTS, FLOATS; empty ones for a new carry)."""
    ints, floats = unpack(carried.get("i"), np.int64), unpack(carried.get("f"))
    m = len(carried.get("ids", []))
    steps, checks = int(ints[m:2 * m].sum()), int(ints[2 * m:3 * m].sum())
    out = dict(zip(INTS, np.split(ints, np.cumsum([m, m, m, steps, steps])), strict=True))
    out.update(zip(FLOATS, np.split(floats, np.cumsum([m, m, steps])), strict=True))
    assert len(out["c"]) == checks and len(out["sy"]) == steps  # the layout above
    return out


@functools.lru_cache(maxsize=16)
def _parameters(s: MotionSettings) -> np.ndarray:
    """The settings the walk reads, in its units (ms, m/s, km/h), in the order ``_walk`` unpacks them."""
    return np.array([round(s.max_step_s * MS_PER_S), s.max_speed_kmh / 3.6, round(s.track_window_s * MS_PER_S),
                     round(s.predict_window_s * MS_PER_S), s.step_tolerance_kmh, s.step_tolerance_share,
                     s.speed_tolerance_kmh, s.speed_tolerance_share, round(s.trust_window_s * MS_PER_S),
                     s.speed_trust_share, s.trust_min_checks, STEP_DECIMALS], float)


_NO_SKIP = np.zeros(0, np.int64)  # ``_median``'s mask when every value counts


@numba.njit(cache=True, nogil=True)
def _median(values: np.ndarray, skip: np.ndarray, scratch: np.ndarray) -> float:  # pragma: no cover - compiled
    """Median of the finite ``values`` where ``skip`` is not 1 (``_NO_SKIP``: all of them; NaN when none), the mean
    of the middle two as numpy's; sorted by insertion into ``scratch`` (windows hold a few steps)."""
    k = 0
    for j in range(len(values)):
        v = values[j]
        if (len(skip) and skip[j] == 1) or not np.isfinite(v):
            continue
        at = k
        while at > 0 and scratch[at - 1] > v:
            scratch[at] = scratch[at - 1]
            at -= 1
        scratch[at] = v
        k += 1
    if k == 0:
        return np.nan
    return (scratch[(k - 1) // 2] + scratch[k // 2]) / 2.0


@numba.njit(cache=True, nogil=True)
def _walk(starts, ends, t, x, y, v, slot, absent, c_ints, c_floats, scale, parameters):  # pragma: no cover
    """Each machine's samples in turn (rows starts[m]:ends[m]) from what its slot carried; returns the speeds,
    which machines have a fix to carry, and the new carry in INTS / FLOATS order: the machines of the batch with a
    fix, then those carried and ``absent`` from it, as they were."""
    max_step_ms, max_step_speed, track_ms = np.int64(parameters[0]), parameters[1], np.int64(parameters[2])
    predict_ms, step_tol_kmh, step_tol_share = np.int64(parameters[3]), parameters[4], parameters[5]
    speed_tol_kmh, speed_tol_share, trust_ms = parameters[6], parameters[7], np.int64(parameters[8])
    trust_share, min_checks, unit = parameters[9], np.int64(parameters[10]), 10.0 ** parameters[11]
    # the carry's layout (INTS, FLOATS): per machine ft, sn, cn and fx, fy; then everyone's steps and checks
    m_c = len(absent)
    c_ft, c_sn, c_cn = c_ints[:m_c], c_ints[m_c:2 * m_c], c_ints[2 * m_c:3 * m_c]
    c_fx, c_fy = c_floats[:m_c], c_floats[m_c:2 * m_c]
    n_steps = c_sn.sum()
    c_st, c_so = c_ints[3 * m_c:3 * m_c + n_steps], c_ints[3 * m_c + n_steps:3 * m_c + 2 * n_steps]
    c_packed = c_ints[3 * m_c + 2 * n_steps:]
    c_sx, c_sy = c_floats[2 * m_c:2 * m_c + n_steps], c_floats[2 * m_c + n_steps:]
    c_step_at, c_check_at = np.zeros(m_c + 1, np.int64), np.zeros(m_c + 1, np.int64)
    c_step_at[1:], c_check_at[1:] = np.cumsum(c_sn), np.cumsum(c_cn)
    machines = len(starts)
    n = len(t)
    out = v.copy()
    east, north = scale[0], scale[1]
    has = np.zeros(machines, np.bool_)
    kept = machines + m_c
    fix_t, fix_x, fix_y = np.zeros(kept, np.int64), np.zeros(kept), np.zeros(kept)
    steps_per, checks_per = np.zeros(kept, np.int64), np.zeros(kept, np.int64)
    n_kept = 0
    cap_steps = len(c_st) + n
    cap_checks = len(c_packed) + n
    out_st, out_sx, out_sy = np.empty(cap_steps, np.int64), np.empty(cap_steps), np.empty(cap_steps)
    out_so, out_c = np.empty(cap_steps, np.int64), np.empty(cap_checks, np.int64)
    n_out_steps = 0
    n_out_checks = 0
    for m in range(machines):
        a, b = starts[m], ends[m]
        j = slot[m]
        # this machine's steps (time, velocity, jump verdict) and checks (time, agreed), carried ones first
        k0 = c_step_at[j] if j >= 0 else 0
        k1 = c_step_at[j + 1] if j >= 0 else 0
        q0 = c_check_at[j] if j >= 0 else 0
        q1 = c_check_at[j + 1] if j >= 0 else 0
        size = k1 - k0 + b - a
        st, sx, sy, so = np.empty(size, np.int64), np.empty(size), np.empty(size), np.empty(size, np.int64)
        scratch = np.empty(size)  # for the medians of a window's steps
        ct, ca = np.empty(q1 - q0 + b - a, np.int64), np.empty(q1 - q0 + b - a + 1, np.int64)
        last_t, last_x, last_y, last_ok = np.int64(0), 0.0, 0.0, False
        if j >= 0:
            last_t, last_x, last_y, last_ok = c_ft[j], c_fx[j], c_fy[j], True
        ns = 0
        for k in range(k0, k1):
            st[ns], sx[ns], sy[ns], so[ns] = last_t - c_st[k], c_sx[k], c_sy[k], c_so[k]
            ns += 1
        nc = 0
        ca[0] = 0
        for k in range(q0, q1):
            ct[nc] = last_t - c_packed[k] // 2
            ca[nc + 1] = ca[nc] + c_packed[k] % 2
            nc += 1
        newest = last_t if j >= 0 else np.int64(-(2 ** 62))
        trust_lo = 0
        for i in range(a, b):
            ti = t[i] // 1_000_000  # ns -> ms
            if last_ok and ti < last_t:  # late: older than the newest fix
                out[i] = v[i]
                continue
            newest = max(newest, ti)
            fixed = np.isfinite(x[i]) and np.isfinite(y[i])
            vx, vy = np.nan, np.nan
            if fixed and last_ok and ti - last_t > 0 and ti - last_t <= max_step_ms:
                dt = (ti - last_t) / 1000.0
                vx = np.rint((x[i] - last_x) * east / dt * unit) / unit  # np.round(., decimals), unrolled
                vy = np.rint((y[i] - last_y) * north / dt * unit) / unit
                if vx * vx + vy * vy > max_step_speed * max_step_speed:  # a GNSS spike, not motion
                    vx, vy = np.nan, np.nan
            st[ns], sx[ns], sy[ns], so[ns] = ti, vx, vy, -1
            ns += 1
            if fixed:
                last_t, last_x, last_y, last_ok = ti, x[i], y[i], True
            # checked against the step when there is one (the track estimate itself where no step is a jump's
            # edge); a sample without one (a repeat, a spike, after a gap) against the track estimate
            track_kmh = np.sqrt(vx * vx + vy * vy) * 3.6
            estimated = False
            if not np.isfinite(track_kmh):
                tx, ty = _track(st, sx, sy, so, ns, track_ms, predict_ms, step_tol_kmh, step_tol_share, scratch)
                track_kmh, estimated = np.sqrt(tx * tx + ty * ty) * 3.6, True
            checked = np.isfinite(track_kmh) and np.isfinite(v[i])
            agrees_now = checked and abs(v[i] - track_kmh) <= speed_tol_kmh + speed_tol_share * track_kmh
            if checked:
                ct[nc] = ti
                ca[nc + 1] = ca[nc] + (1 if agrees_now else 0)
                nc += 1
            while trust_lo < nc and ct[trust_lo] < ti - trust_ms:
                trust_lo += 1
            count = nc - trust_lo
            if count >= min_checks:
                trusted = (ca[nc] - ca[trust_lo]) >= trust_share * count
            else:
                trusted = agrees_now
            if checked and trusted:
                out[i] = v[i]
                continue
            # not trusted, or nothing to check with: the jump-filtered track where it has one
            if not estimated:
                tx, ty = _track(st, sx, sy, so, ns, track_ms, predict_ms, step_tol_kmh, step_tol_share, scratch)
                track_kmh = np.sqrt(tx * tx + ty * ty) * 3.6
            out[i] = track_kmh if np.isfinite(track_kmh) else v[i]
        if last_ok:
            has[m] = True
            fix_t[n_kept], fix_x[n_kept], fix_y[n_kept] = last_t, last_x, last_y
            for k in range(ns):
                if np.isfinite(sx[k]) and st[k] > newest - (track_ms + predict_ms):
                    out_st[n_out_steps], out_sx[n_out_steps], out_sy[n_out_steps] = last_t - st[k], sx[k], sy[k]
                    out_so[n_out_steps] = so[k]
                    n_out_steps += 1
                    steps_per[n_kept] += 1
            for k in range(nc):
                if ct[k] > newest - trust_ms:
                    out_c[n_out_checks] = (last_t - ct[k]) * 2 + (ca[k + 1] - ca[k])
                    n_out_checks += 1
                    checks_per[n_kept] += 1
            n_kept += 1
    for j in range(m_c):  # machines without samples in this batch: as they were
        if not absent[j]:
            continue
        fix_t[n_kept], fix_x[n_kept], fix_y[n_kept] = c_ft[j], c_fx[j], c_fy[j]
        steps_per[n_kept], checks_per[n_kept] = c_sn[j], c_cn[j]
        for k in range(c_step_at[j], c_step_at[j + 1]):
            out_st[n_out_steps], out_sx[n_out_steps], out_sy[n_out_steps] = c_st[k], c_sx[k], c_sy[k]
            out_so[n_out_steps] = c_so[k]
            n_out_steps += 1
        for k in range(c_check_at[j], c_check_at[j + 1]):
            out_c[n_out_checks] = c_packed[k]
            n_out_checks += 1
        n_kept += 1
    ints = np.concatenate((fix_t[:n_kept], steps_per[:n_kept], checks_per[:n_kept], out_st[:n_out_steps],
                           out_so[:n_out_steps], out_c[:n_out_checks]))
    floats = np.concatenate((fix_x[:n_kept], fix_y[:n_kept], out_sx[:n_out_steps], out_sy[:n_out_steps]))
    return out, has, ints, floats


@numba.njit(cache=True, nogil=True)
def _track(st, sx, sy, so, ns, track_ms, predict_ms, step_tol_kmh, step_tol_share, scratch):  # pragma: no cover
    """Track velocity at the newest step (index ns - 1): the median of the steps of the predict window that are
    no jump's edge (a step far from the typical step speed of the track window before it), else the median of
    all steps of the track window. Jump verdicts are worked out once and kept in ``so``."""
    i = ns - 1
    lo = _window_start(st, i, predict_ms)
    for k in range(lo, i + 1):
        if so[k] < 0:
            so[k] = _is_jump_edge(st, sx, sy, k, track_ms, step_tol_kmh, step_tol_share, scratch)
    vx = _median(sx[lo:i + 1], so[lo:i + 1], scratch)
    vy = _median(sy[lo:i + 1], so[lo:i + 1], scratch)
    if np.isfinite(vx):
        return vx, vy
    w = _window_start(st, i, track_ms)
    return _median(sx[w:i + 1], _NO_SKIP, scratch), _median(sy[w:i + 1], _NO_SKIP, scratch)


@numba.njit(cache=True, nogil=True)
def _window_start(st, i, window_ms):  # pragma: no cover - compiled
    """The first step at most ``window_ms`` before step i (steps in time order)."""
    w = i
    while w > 0 and st[w - 1] >= st[i] - window_ms:
        w -= 1
    return w


@numba.njit(cache=True, nogil=True)
def _is_jump_edge(st, sx, sy, k, track_ms, step_tol_kmh, step_tol_share, scratch):  # pragma: no cover - compiled
    """1 when step k's speed is far from the median step speed of the track window before it, else 0."""
    w = _window_start(st, k, track_ms)
    speeds = np.empty(k + 1 - w)
    for j in range(w, k + 1):
        speeds[j - w] = np.sqrt(sx[j] * sx[j] + sy[j] * sy[j])
    typical = _median(speeds, _NO_SKIP, scratch)
    step = speeds[k - w]
    if not (np.isfinite(step) and np.isfinite(typical)):
        return 0
    return 1 if abs(step - typical) * 3.6 > step_tol_kmh + step_tol_share * typical * 3.6 else 0


def _compile() -> None:
    """Compile the walk (or load it from numba's cache) at import, not in the middle of a live stream: compiling
    holds the GIL for seconds, which stalls an ingest thread sharing the process (arrivals then look late)."""
    speed_over_ground(np.array(["m", "m"], object), np.array([0, 1000]), np.zeros(2), np.zeros(2), np.ones(2), {})


_compile()
