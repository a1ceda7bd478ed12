"""Motion over ground for services that need speed and standing: the machine's own speed while it agrees with the
displacement of its fixes over a noise-long baseline, else what the fixes say over that baseline.

Why a baseline: a standalone receiver's fix has 1-2.5 m of white jitter per axis, so a step between 1-s fixes has
several m/s of noise and a standing truck "moves". Over ``baseline_s`` (20 s) the same jitter is a tenth of a m/s.
So once a second (each second's first fix) the reported speed is checked against the fixes over the baseline: the
median of one fix a second over ``smooth_s`` at each end (a GNSS jump up to half of it is outvoted), the path they
show over four parts of the span against the distance the reported speed covered between the same two times,
within the physical tolerance (``speed_tolerance_kmh`` + ``speed_tolerance_share``) plus ``noise_sigmas`` times the
receiver's noise times sqrt 2 over the baseline; a reported standstill while displaced beyond that noise floor
disagrees outright. The reported speed is used while most checks of the trust window agree and they have not all
disagreed for ``trust_min_checks`` seconds; a value caught disagreeing stays suspect while it repeats exactly (a
stuck 0 reads right whenever the machine stands). Where it is not trusted (stuck, absent, dead) the fixes decide:
a precise receiver's jump-filtered short-window track (``motion.py``'s estimate); else a displacement within the
noise floor is standing (speed 0) and above it the short-window track. The receiver's noise is estimated in the
same walk (``receiver.py``), so every threshold scales with the machine's own receiver: RTK to standalone.

Why a compiled kernel: all of that is a walk along each machine's samples carrying short windows (steps, checks,
per-second fixes, a running noise estimate), which numpy can only express as dozens of whole-array passes; the
check must cost a service a small share of its rows per second in batches of every size (issue #18).

Deterministic across batch splits: each machine carries its newest fix, the steps of the track and predict windows
with their jump verdicts, the checks of the trust window, the per-second fixes of the baseline, its reported
distance so far and its noise estimate, exactly what the next samples read (as packed arrays,
``microservices/packed.py``), so batches split anywhere give the same results.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from microservices.motion_settings import MotionSettings
from microservices.packed import pack, unpack
from microservices.receiver import GATE_SIGMAS, PRIOR_LOG, PRIOR_S, noise_of, observe, seeds_for
from microservices.receiver import noise_state as receiver_state

CARRY_VERSION = 10  # 9: baseline buckets and the receiver's noise estimate; 10: without 3 unread bucket fields
MS_PER_S = 1000  # the walk's clock: samples' times in whole ms, as motion.py's windows
STEP_DECIMALS = 3  # steps in m/s to the mm/s, in the walk and in what it carries alike
DEFAULTS = MotionSettings()
NONE_MS = -(2 ** 62)  # "no such time"
NB = 11  # fields per bucket (B_FLOATS)
SUBSPANS = 4  # the fixes' path over a baseline is measured over this many parts
# per-sample flags of the walk
TRUSTED, CHECKED, AGREES, STANDING = 1, 2, 4, 8


@dataclass(frozen=True)
class GroundMotion:
    """Per sample: speed over ground (km/h; NaN where nothing tells), standing, the receiver's noise (m per axis)
    and how the reported speed fared (used, checked against the baseline, agreed)."""

    speed_kmh: np.ndarray
    standing: np.ndarray
    noise_m: np.ndarray
    speed_used: np.ndarray
    speed_checked: np.ndarray
    speed_agrees: np.ndarray
    base_kmh: np.ndarray  # speed of the displacement over the baseline (NaN without one)
    base_reported_kmh: np.ndarray  # the reported speed's mean over the same baseline (NaN where not checked)
    course_base_deg: np.ndarray  # direction of that displacement, where it is well above the noise
    course_reported_deg: np.ndarray  # direction of the displacement the reported heading (and speed) implies


def _ground(out: np.ndarray, flags: np.ndarray, noise: np.ndarray, based: np.ndarray) -> GroundMotion:
    return GroundMotion(out, (flags & STANDING) > 0, noise, (flags & TRUSTED) > 0, (flags & CHECKED) > 0,
                        (flags & AGREES) > 0, based[:, 0] * 3.6, based[:, 1] * 3.6, based[:, 2], based[:, 3])


def _grouped(machine: np.ndarray) -> tuple[list[tuple[str, int, int]], np.ndarray | None]:
    """Runs (machine, start, stop) of rows grouped by machine, and the order that groups them (None: they were)."""
    n = len(machine)
    starts = np.flatnonzero(np.concatenate(([True], machine[1:] != machine[:-1]))) if n else np.zeros(0, np.int64)
    names = machine[starts].tolist()
    if len(set(names)) == len(names):
        return list(zip(names, starts.tolist(), [*starts[1:].tolist(), n], strict=True)), None
    order = np.argsort(np.unique(machine.astype(str), return_inverse=True)[1], kind="stable")
    runs, _ = _grouped(machine[order])
    return runs, order


def motion_over_ground(machine: np.ndarray, t_ms: np.ndarray, x: np.ndarray, y: np.ndarray, speed_kmh: np.ndarray,
                       carried: dict[str, Any], settings: MotionSettings | None = None,
                       heading_deg: np.ndarray | None = None) -> tuple[GroundMotion, dict[str, Any]]:
    """Speed, standing and receiver noise per sample, and what to carry ({} at first).

    Rows of any machines in time order per machine; x, y in metres on any local plane (only differences count).
    A sample older than its machine's newest fix (a late delivery) keeps its reported speed: the track has moved
    past it.
    """
    machine = np.asarray(machine, object)
    runs, order = _grouped(machine)
    heading = np.full(len(machine), np.nan) if heading_deg is None else heading_deg
    cols = [np.asarray(c) for c in (t_ms, x, y, speed_kmh, heading)]
    if order is not None:
        cols = [c[order] for c in cols]
    t, xs, ys, v, h = cols
    motion, kept = motion_of_runs(runs, np.asarray(t, np.int64) * 1_000_000, xs, ys, (1.0, 1.0), v, carried,
                                  settings, h)
    if order is None:
        return motion, kept
    back = np.empty(len(machine), np.int64)
    back[order] = np.arange(len(machine))
    return GroundMotion(*(getattr(motion, f)[back] for f in GroundMotion.__dataclass_fields__)), kept


def speed_over_ground(machine: np.ndarray, t_ms: np.ndarray, x: np.ndarray, y: np.ndarray, speed_kmh: np.ndarray,
                      carried: dict[str, Any], settings: MotionSettings | None = None
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """``motion_over_ground``'s speed (km/h; 0 where the machine stands) and what to carry."""
    motion, kept = motion_over_ground(machine, t_ms, x, y, speed_kmh, carried, settings)
    return motion.speed_kmh, kept


def speeds_of_runs(runs: list[tuple[str, int, int]], t_ns: np.ndarray, x: np.ndarray, y: np.ndarray,
                   scale: tuple[float, float], speed_kmh: np.ndarray, carried: dict[str, Any],
                   settings: MotionSettings | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``motion_of_runs``'s speed (km/h; 0 where the machine stands, reported elsewhere) and what to carry (without
    the other fields, which a caller of every small batch would pay for unread)."""
    walked, kept = _walk_runs(runs, t_ns, x, y, scale, speed_kmh, carried, settings, None, False)
    return walked[0], kept


def motion_of_runs(runs: list[tuple[str, int, int]], t_ns: np.ndarray, x: np.ndarray, y: np.ndarray,
                   scale: tuple[float, float], speed_kmh: np.ndarray, carried: dict[str, Any],
                   settings: MotionSettings | None = None, heading_deg: np.ndarray | None = None,
                   courses: bool = True) -> tuple[GroundMotion, dict[str, Any]]:
    """``motion_over_ground`` for the rows of ``runs`` (machine, start, stop: each machine's samples, in time
    order), the reported speed elsewhere; metres are x, y times ``scale`` (a site frame's ``metres_per_degree``
    takes longitude and latitude as they come, with no projected copy of the batch). Without ``courses`` the
    course fields are NaN (their atan2 cost a tenth of the walk; only data quality reads them)."""
    walked, kept = _walk_runs(runs, t_ns, x, y, scale, speed_kmh, carried, settings, heading_deg, courses)
    return _ground(*walked), kept


def _walk_runs(runs: list[tuple[str, int, int]], t_ns: np.ndarray, x: np.ndarray, y: np.ndarray,
               scale: tuple[float, float], speed_kmh: np.ndarray, carried: dict[str, Any],
               settings: MotionSettings | None, heading_deg: np.ndarray | None, courses: bool
               ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
    """The walk over ``runs`` from ``carried``: (speed, flags, noise, baseline figures) and the new carry."""
    s = settings or DEFAULTS
    if carried.get("v") != CARRY_VERSION:
        carried = {}
    names = [name for name, _, _ in runs]
    ids = carried.get("ids", [])
    slot_of = {name: i for i, name in enumerate(ids)}
    present = set(names)
    absent = [name not in present for name in ids]  # they carry on what they carried
    heading = np.full(len(t_ns), np.nan) if heading_deg is None else np.asarray(heading_deg, float)
    out, flags, noise, based, has, ints, floats, _ = _walk(
        np.array([a for _, a, _ in runs], np.int64), np.array([b for _, _, b in runs], np.int64),
        np.asarray(t_ns, np.int64), np.asarray(x, float), np.asarray(y, float), np.asarray(speed_kmh, float), heading,
        np.array([slot_of.get(name, -1) for name in names], np.int64), np.array(absent, np.bool_),
        unpack(carried.get("i"), np.int64), unpack(carried.get("f")), np.array(scale, float), _parameters(s),
        np.full((len(runs), 4), np.nan), courses)
    kept_ids = [name for name, h in zip(names, has.tolist(), strict=True) if h]
    kept_ids += [name for name, a in zip(ids, absent, strict=True) if a]
    return (out, flags, noise, based), {"v": CARRY_VERSION, "ids": kept_ids, "i": pack(ints, np.int64),
                                        "f": pack(floats)}


def batch_motion(group: np.ndarray, t_ms: np.ndarray, x: np.ndarray, y: np.ndarray, speed_kmh: np.ndarray,
                 settings: MotionSettings | None = None, names: np.ndarray | None = None,
                 noise_state: dict | None = None, heading_deg: np.ndarray | None = None) -> tuple[GroundMotion, dict]:
    """The walk over one batch sorted by (group, time) without a full carry (for vectorised services that feed a
    tail of earlier samples with each batch): only the receiver's noise estimate is carried, in ``noise_state``
    (``receiver.noise_state``; keyed by ``names[group]``, the group's index where ``names`` is None), and samples
    it already observed are not observed again. Returns the motion and the new noise state."""
    s = settings or DEFAULTS
    group = np.asarray(group)
    n = len(group)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if n else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], n].astype(np.int64)
    keys = [str(names[g]) if names is not None else str(g) for g in group[starts].tolist()]
    t = np.asarray(t_ms, np.int64)
    heading = np.full(n, np.nan) if heading_deg is None else np.asarray(heading_deg, float)
    out, flags, noise, based, _, _, _, estimates = _walk(
        starts.astype(np.int64), ends, t * 1_000_000, np.asarray(x, float), np.asarray(y, float),
        np.asarray(speed_kmh, float), heading, np.full(len(starts), -1, np.int64), np.zeros(0, np.bool_),
        np.zeros(0, np.int64), np.zeros(0), np.ones(2), _parameters(s), seeds_for(noise_state, keys), True)
    newest = np.maximum.reduceat(t, starts) if n else np.zeros(0, np.int64)
    return _ground(out, flags, noise, based), receiver_state(noise_state, keys, estimates, newest)


# what each machine carries, packed in two arrays (the integers and the floats) in this order: per machine its
# newest fix time (ms), counts of steps, checks and buckets, since when its reported speed says standing, when the
# reported distance was last unknown, its last reported speed's time; then all machines' steps (ms before the
# newest fix, jump verdict), checks ((ms before the newest fix) * 2 + agreed) and buckets (last fix time, ms).
# Floats: per machine the newest fix (x, y), noise estimate (mean log, weight), reported distance (m), last
# reported speed (m/s), reported displacement (speed times heading, east, north) and its last sample; then the
# steps' velocities and the buckets' first fixes, medians, distances, times, displacements.
M_INTS = ("ft", "sn", "cn", "bn", "ss", "nt", "vt", "ht")
M_FLOATS = ("fx", "fy", "mu", "nw", "cum", "lv", "ce", "cno", "le", "ln", "sus")
B_FLOATS = ("rx", "ry", "bsx", "bsy", "bcum", "bst", "bce", "bcn", "bscum", "bsce", "bscn")


def carried_arrays(carried: dict[str, Any]) -> dict[str, np.ndarray]:
    """What ``motion_of_runs`` carried, as arrays by name (empty ones for a new carry)."""
    ints, floats = unpack(carried.get("i"), np.int64), unpack(carried.get("f"))
    m = len(carried.get("ids", []))
    k = len(M_INTS)
    steps, checks, buckets = int(ints[m:2 * m].sum()), int(ints[2 * m:3 * m].sum()), int(ints[3 * m:4 * m].sum())
    names = (*M_INTS, "st", "so", "c", "bt")
    sizes = [m] * k + [steps, steps, checks, buckets]
    out = dict(zip(names, np.split(ints, np.cumsum(sizes)[:-1]), strict=True))
    fnames = (*M_FLOATS, "sx", "sy", *B_FLOATS)
    fsizes = [m] * len(M_FLOATS) + [steps, steps] + [buckets] * len(B_FLOATS)
    out.update(zip(fnames, np.split(floats, np.cumsum(fsizes)[:-1]), strict=True))
    return out


@functools.lru_cache(maxsize=16)
def _parameters(s: MotionSettings) -> np.ndarray:
    """The settings the walk reads, in its units (ms, m/s, km/h), in the order ``_walk`` unpacks them."""
    return np.array([round(s.max_step_s * MS_PER_S), s.max_speed_kmh / 3.6, round(s.track_window_s * MS_PER_S),
                     round(s.predict_window_s * MS_PER_S), s.step_tolerance_kmh, s.step_tolerance_share,
                     s.speed_tolerance_kmh, s.speed_tolerance_share, round(s.trust_window_s * MS_PER_S),
                     s.speed_trust_share, s.trust_min_checks, STEP_DECIMALS, round(s.baseline_s * MS_PER_S),
                     max(1, round(s.smooth_s)), s.noise_sigmas, s.standing_kmh, s.precise_noise_m,
                     round(s.min_baseline_s * MS_PER_S)], float)


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
def insert_sorted(ordered: np.ndarray, k: int, value: float) -> None:  # pragma: no cover - compiled
    """Insert ``value`` into the sorted ``ordered[:k]`` (room for one more)."""
    at = k
    while at > 0 and ordered[at - 1] > value:
        ordered[at] = ordered[at - 1]
        at -= 1
    ordered[at] = value


@numba.njit(cache=True, nogil=True)
def remove_sorted(ordered: np.ndarray, k: int, value: float) -> None:  # pragma: no cover - compiled
    """Remove one ``value`` from the sorted ``ordered[:k]``."""
    at = 0
    while at < k - 1 and ordered[at] != value:
        at += 1
    for j in range(at, k - 1):
        ordered[j] = ordered[j + 1]


@numba.njit(cache=True, nogil=True)
def _walk(starts, ends, t, x, y, v, h, slot, absent, c_ints, c_floats, scale, parameters, seeds,  # pragma: no cover
          courses):
    """Each machine's samples in turn (rows starts[m]:ends[m]) from what its slot carried; returns the speeds, the
    per-sample flags (TRUSTED, CHECKED, AGREES, STANDING) and noise, which machines have a fix to carry, and the
    new carry (the layout of ``carried_arrays``): the machines of the batch with a fix, then those carried and
    ``absent`` from it, as they were. ``seeds`` (per machine: mean log, weight, time, suspect speed value) start a
    machine without a slot, whose noise estimate observes only samples after that time; also returned: each
    machine's estimate (mean log, weight) and suspect value after its samples. ``courses``: also the directions
    of the displacements (two atan2 a second that only data quality reads; NaN without)."""
    max_step_ms, max_step_speed, track_ms = np.int64(parameters[0]), parameters[1], np.int64(parameters[2])
    predict_ms, step_tol_kmh, step_tol_share = np.int64(parameters[3]), parameters[4], parameters[5]
    speed_tol_ms, speed_tol_share, trust_ms = parameters[6] / 3.6, parameters[7], np.int64(parameters[8])
    trust_share, min_checks, unit = parameters[9], np.int64(parameters[10]), 10.0 ** parameters[11]
    baseline_ms, smooth_n, sigmas = np.int64(parameters[12]), np.int64(parameters[13]), parameters[14]
    standing_kmh, precise_m, min_span_ms = parameters[15], parameters[16], np.int64(parameters[17])
    keep_ms = max(baseline_ms + max_step_ms, smooth_n * 1000)  # buckets a later sample may still read
    root2 = math.sqrt(2.0)
    # the carry's layout: per machine 8 ints and 11 floats, then everyone's steps, checks and buckets
    m_c = len(absent)
    c_ft, c_sn, c_cn, c_bn = c_ints[:m_c], c_ints[m_c:2 * m_c], c_ints[2 * m_c:3 * m_c], c_ints[3 * m_c:4 * m_c]
    c_ss, c_nt, c_vt = c_ints[4 * m_c:5 * m_c], c_ints[5 * m_c:6 * m_c], c_ints[6 * m_c:7 * m_c]
    c_ht = c_ints[7 * m_c:8 * m_c]
    n_steps, n_checks, n_buckets = c_sn.sum(), c_cn.sum(), c_bn.sum()
    o = 8 * m_c
    c_st, c_so = c_ints[o:o + n_steps], c_ints[o + n_steps:o + 2 * n_steps]
    c_packed = c_ints[o + 2 * n_steps:o + 2 * n_steps + n_checks]
    c_bt = c_ints[o + 2 * n_steps + n_checks:]
    c_fx, c_fy, c_mu, c_nw = c_floats[:m_c], c_floats[m_c:2 * m_c], c_floats[2 * m_c:3 * m_c], c_floats[3 * m_c:4 * m_c]
    c_cum, c_lv = c_floats[4 * m_c:5 * m_c], c_floats[5 * m_c:6 * m_c]
    c_ce, c_cn2, c_le, c_ln = c_floats[6 * m_c:7 * m_c], c_floats[7 * m_c:8 * m_c], c_floats[8 * m_c:9 * m_c], \
        c_floats[9 * m_c:10 * m_c]
    c_sus = c_floats[10 * m_c:11 * m_c]
    o = 11 * m_c
    c_sx, c_sy = c_floats[o:o + n_steps], c_floats[o + n_steps:o + 2 * n_steps]
    c_bf = c_floats[o + 2 * n_steps:]  # NB fields, each n_buckets long
    c_step_at, c_check_at, c_bucket_at = np.zeros(m_c + 1, np.int64), np.zeros(m_c + 1, np.int64), \
        np.zeros(m_c + 1, np.int64)
    c_step_at[1:], c_check_at[1:], c_bucket_at[1:] = np.cumsum(c_sn), np.cumsum(c_cn), np.cumsum(c_bn)
    machines = len(starts)
    n = len(t)
    out = v.copy()
    flags = np.zeros(n, np.int64)
    noise = np.full(n, np.nan)
    based_out = np.full((n, 4), np.nan)  # speed over the baseline and reported over it (m/s), both courses (deg)
    east, north = scale[0], scale[1]
    has = np.zeros(machines, np.bool_)
    kept = machines + m_c
    k_ints, k_floats = np.zeros((8, kept), np.int64), np.zeros((11, kept))
    n_kept = 0
    cap_steps, cap_checks, cap_buckets = len(c_st) + n, len(c_packed) + n, len(c_bt) + n
    out_st, out_sx, out_sy = np.empty(cap_steps, np.int64), np.empty(cap_steps), np.empty(cap_steps)
    out_so, out_c = np.empty(cap_steps, np.int64), np.empty(cap_checks, np.int64)
    out_bt, out_bf = np.empty(cap_buckets, np.int64), np.empty((NB, cap_buckets))
    n_out_steps, n_out_checks, n_out_buckets = 0, 0, 0
    smooth_x, smooth_y = np.empty(smooth_n + 2), np.empty(smooth_n + 2)
    estimates = np.zeros((machines, 3))
    for m in range(machines):
        a, b = starts[m], ends[m]
        j = slot[m]
        # this machine's steps (time, velocity, jump verdict), checks (time, agreed) and per-second buckets (first fix
        # time; sums, count, first fix, smoothed position, reported distance), carried ones first
        k0 = c_step_at[j] if j >= 0 else 0
        k1 = c_step_at[j + 1] if j >= 0 else 0
        q0 = c_check_at[j] if j >= 0 else 0
        q1 = c_check_at[j + 1] if j >= 0 else 0
        r0 = c_bucket_at[j] if j >= 0 else 0
        r1 = c_bucket_at[j + 1] if j >= 0 else 0
        size = k1 - k0 + b - a
        st, sx, sy, so = np.empty(size, np.int64), np.empty(size), np.empty(size), np.empty(size, np.int64)
        scratch = np.empty(max(size, smooth_n + 1))  # for the medians of a window's steps
        ct, ca = np.empty(q1 - q0 + b - a, np.int64), np.empty(q1 - q0 + b - a + 1, np.int64)
        bt, bf = np.empty(r1 - r0 + b - a, np.int64), np.empty((NB, r1 - r0 + b - a))
        last_t, last_x, last_y, last_ok = np.int64(0), 0.0, 0.0, False
        mu, nw, cum, lv = PRIOR_LOG, PRIOR_S, 0.0, np.nan
        ce, cn_, le, ln, suspect = 0.0, 0.0, np.nan, np.nan, np.nan
        ss, nt, vt, ht = np.int64(NONE_MS), np.int64(NONE_MS), np.int64(NONE_MS), np.int64(NONE_MS)
        if j >= 0:
            last_t, last_x, last_y, last_ok = c_ft[j], c_fx[j], c_fy[j], True
            mu, nw, cum, lv = c_mu[j], c_nw[j], c_cum[j], c_lv[j]
            ce, cn_, le, ln, suspect = c_ce[j], c_cn2[j], c_le[j], c_ln[j], c_sus[j]
            ss, nt, vt, ht = c_ss[j], c_nt[j], c_vt[j], c_ht[j]
        observed_after = np.int64(NONE_MS)
        if j < 0 and np.isfinite(seeds[m, 0]):
            mu, nw, observed_after, suspect = seeds[m, 0], seeds[m, 1], np.int64(seeds[m, 2]), seeds[m, 3]
        sigma = noise_of(mu)
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
        nb = 0
        for k in range(r0, r1):
            bt[nb] = c_bt[k]
            for f in range(NB):
                bf[f, nb] = c_bf[f * n_buckets + k]
            nb += 1
        newest = last_t if j >= 0 else np.int64(-(2 ** 62))
        trust_lo = 0
        anchor = 0
        judged, based, disp, v_base = False, False, np.nan, np.nan
        built, wstart = False, 0
        parts = np.zeros(SUBSPANS, np.int64)
        part_to, part_m = np.full(len(bt), -1, np.int64), np.empty(len(bt))  # per bucket: its part's end, length
        for i in range(a, b):
            ti = t[i] // 1_000_000  # ns -> ms
            vi = v[i]
            if last_ok and ti < last_t:  # late: older than the newest fix
                out[i] = vi
                if np.isfinite(vi):
                    flags[i] = TRUSTED | (STANDING if vi <= standing_kmh else 0)
                noise[i] = sigma
                continue
            newest = max(newest, ti)
            # the distance the reported speed covered (trapezoids); unknown across a missing speed or a gap
            if np.isfinite(vi):
                if vt != NONE_MS and np.isfinite(lv) and ti - vt <= max_step_ms:
                    cum += (lv + vi / 3.6) * 0.5 * (ti - vt) / 1000.0
                else:
                    nt = ti
                lv = vi / 3.6
                if vi > standing_kmh:
                    ss = NONE_MS
                elif ss == NONE_MS:
                    ss = ti
            else:
                nt, lv, ss = ti, np.nan, NONE_MS
            # the displacement the reported heading (weighted by the reported speed, else 1 m/s) implies: its
            # direction over a baseline is the course the fixes' displacement must show, in turns as on straights
            if np.isfinite(h[i]):
                weight = vi / 3.6 if np.isfinite(vi) else 1.0
                e_now, n_now = weight * math.sin(math.radians(h[i])), weight * math.cos(math.radians(h[i]))
                if vt != NONE_MS and np.isfinite(le) and ti - vt <= max_step_ms:
                    ce += (le + e_now) * 0.5 * (ti - vt) / 1000.0
                    cn_ += (ln + n_now) * 0.5 * (ti - vt) / 1000.0
                else:
                    ht = ti
                le, ln = e_now, n_now
            else:
                ht, le, ln = ti, np.nan, np.nan
            vt = ti
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
            while trust_lo < nc and ct[trust_lo] < ti - trust_ms:
                trust_lo += 1
            count = nc - trust_lo
            trusted_before = np.isfinite(vi) and count >= min_checks and ca[nc] - ca[trust_lo] >= trust_share * count
            checked, agrees_now, sigma_after = False, False, sigma
            fresh = False  # a new second: its bucket is judged (once a second whatever the rate)
            if fixed:
                if nb == 0 or bt[nb - 1] // 1000 != ti // 1000:
                    bt[nb] = ti
                    bf[0, nb], bf[1, nb] = x[i], y[i]
                    bf[4, nb], bf[6, nb], bf[7, nb] = cum, ce, cn_
                    nb += 1
                    fresh = True
            if fixed and (fresh or not judged):
                # everything below depends on the buckets alone, so a batch starting inside a second judges it
                # again exactly as it was (checks and noise are counted at the bucket's first fix only)
                judged = True
                tb = bt[nb - 1]
                second = tb // 1000
                # where the machine is now: the median of the per-second (first) fixes of the last smooth_n seconds
                # (one a second whatever the rate, so a jump of up to half of them is outvoted at 10 Hz as at 1 Hz),
                # and when it was there: the middle bucket of them, whose reported distance and displacement are
                # what the fixes' displacement is compared with (all over the same span, in turns as on straights)
                # (kept sorted as the window slides: built once per batch, then one fix in and the old ones out)
                if not built:
                    wstart = nb - 1
                    while wstart > 0 and bt[wstart - 1] // 1000 > second - smooth_n:
                        wstart -= 1
                    for q in range(wstart, nb):
                        insert_sorted(smooth_x, q - wstart, bf[0, q])
                        insert_sorted(smooth_y, q - wstart, bf[1, q])
                    built = True
                elif fresh:
                    while bt[wstart] // 1000 <= second - smooth_n:
                        remove_sorted(smooth_x, nb - 1 - wstart, bf[0, wstart])
                        remove_sorted(smooth_y, nb - 1 - wstart, bf[1, wstart])
                        wstart += 1
                    insert_sorted(smooth_x, nb - 1 - wstart, bf[0, nb - 1])
                    insert_sorted(smooth_y, nb - 1 - wstart, bf[1, nb - 1])
                k = nb - wstart
                lo, hi = wstart + (k - 1) // 2, wstart + k // 2  # the middle one (two for an even count)
                now_x = (smooth_x[(k - 1) // 2] + smooth_x[k // 2]) / 2.0
                now_y = (smooth_y[(k - 1) // 2] + smooth_y[k // 2]) / 2.0
                bf[2, nb - 1], bf[3, nb - 1], bf[5, nb - 1] = now_x, now_y, (bt[lo] + bt[hi]) / 2.0
                for f in range(3):  # reported distance, displacement east and north: 4, 6, 7 -> 8, 9, 10
                    src = 4 if f == 0 else 5 + f
                    bf[8 + f, nb - 1] = (bf[src, lo] + bf[src, hi]) / 2.0
                # the baseline: the newest bucket at least baseline_ms old, or where there is none (a short
                # history, a gap) the oldest since, once it is min_span_ms old (with the wider tolerance of a
                # short baseline). Not shorter where the noise would allow it: a GNSS jump spoils the checks while
                # it is at either end, and two such spells within one trust window would outvote a healthy signal
                while anchor + 1 < nb and bt[anchor + 1] <= tb - baseline_ms:
                    anchor += 1
                full = tb - baseline_ms - max_step_ms <= bt[anchor] <= tb - baseline_ms
                if fresh and full and ti > observed_after:
                    # the receiver's noise from this fix against the fix one full baseline before: while the
                    # machine's own trusted speed kept it standing through the baseline; without a trusted speed,
                    # a pair within the noise gate (a driving machine's is far outside); one pair a second
                    rdx, rdy = (x[i] - bf[0, anchor]) * east, (y[i] - bf[1, anchor]) * north
                    if trusted_before:
                        if ss != NONE_MS and ss <= bt[anchor] - 1000:
                            mu, nw = observe(mu, nw, rdx, rdy, 1.0)
                    elif max(abs(rdx), abs(rdy)) <= GATE_SIGMAS * sigma * root2:
                        mu, nw = observe(mu, nw, rdx, rdy, 1.0)
                    sigma_after = noise_of(mu)  # this second's checks still use the noise known before its pair
                use = anchor if full or bt[anchor] > tb - baseline_ms else anchor + 1
                based, disp, v_base = False, np.nan, np.nan
                if use < nb and tb - bt[use] >= min_span_ms and bf[5, nb - 1] > bf[5, use]:
                    based = True
                    since = bf[5, use]  # the span: from when the machine was where the anchor says to when now
                    span = (bf[5, nb - 1] - since) / 1000.0
                    de, dn = (now_x - bf[2, use]) * east, (now_y - bf[3, use]) * north
                    disp = math.hypot(de, dn)
                    floor = sigmas * sigma * root2
                    # the path the fixes show: the smoothed positions at quarters of the span, so a curve or a
                    # hairpin within the baseline is measured as the distance the reported speed covers
                    # (each part's bucket only moves forward: searched on from where it was)
                    # (a part between the same two buckets recurs a quarter of the span later: its length is
                    # kept with its first bucket and reused, the same number without the hypot)
                    path, p = 0.0, use
                    for part in range(1, SUBSPANS + 1):
                        q = nb - 1
                        if part < SUBSPANS:
                            at = since + part * (bf[5, nb - 1] - since) / SUBSPANS
                            q = max(parts[part], use)
                            while q < nb - 1 and bf[5, q] < at:
                                q += 1
                            parts[part] = q
                        if part_to[p] != q:
                            part_to[p] = q
                            part_m[p] = math.hypot((bf[2, q] - bf[2, p]) * east, (bf[3, q] - bf[3, p]) * north)
                        path += part_m[p]
                        p = q
                    v_base = max(path, disp) / span
                    if fresh:
                        based_out[i, 0] = v_base
                        if courses and disp >= 2.0 * floor:  # far enough for its direction to hold (~5 deg)
                            pe, pn = bf[9, nb - 1] - bf[9, use], bf[10, nb - 1] - bf[10, use]
                            based_out[i, 2] = math.degrees(math.atan2(de, dn)) % 360.0
                            if ht <= since and (pe != 0.0 or pn != 0.0):
                                based_out[i, 3] = math.degrees(math.atan2(pe, pn)) % 360.0
                        if np.isfinite(vi) and nt <= since:  # the reported distance over the same span
                            v_reported = (bf[8, nb - 1] - bf[8, use]) / span  # the reported path length
                            tolerance = speed_tol_ms + speed_tol_share * v_base + floor / span
                            checked = True
                            # standing by its own speed yet displaced beyond the noise floor: dead or stuck
                            agrees_now = abs(v_reported - v_base) <= tolerance \
                                and not (v_reported <= standing_kmh / 3.6 and disp > floor)
                            based_out[i, 1] = v_reported
            if checked:
                ct[nc] = ti
                ca[nc + 1] = ca[nc] + (1 if agrees_now else 0)
                nc += 1
            count = nc - trust_lo
            if count >= min_checks:
                # most checks of the trust window agreed, and the checks have not all disagreed for the last
                # min_checks seconds (a dead signal is caught in seconds, not after half the window)
                trusted = (ca[nc] - ca[trust_lo]) >= trust_share * count
                if trusted and not agrees_now and checked:
                    run = nc - 1
                    while run > trust_lo and ca[run] == ca[run - 1]:
                        run -= 1
                    trusted = nc - run < min_checks or ti - ct[run] < min_checks * 1000
            else:  # too few checks yet: the machine's own speed unless it disagrees right now
                trusted = agrees_now or not checked
            # a value caught disagreeing stays suspect while it repeats exactly (a stuck signal reads right again
            # whenever the machine stands, and would be trusted again at every drive-off); a change frees it
            if np.isfinite(vi):
                if not trusted and count >= min_checks:
                    suspect = vi
                elif vi == suspect:
                    trusted = False
                else:
                    suspect = np.nan
            noise[i] = sigma_after
            flag = (CHECKED if checked else 0) | (AGREES if agrees_now else 0)
            if trusted and np.isfinite(vi):
                out[i] = vi
                flag |= TRUSTED | (STANDING if vi <= standing_kmh else 0)
            elif sigma < precise_m:  # 1-s steps resolve speed: the jump-filtered short-window track, at once
                tx, ty = _track(st, sx, sy, so, ns, track_ms, predict_ms, step_tol_kmh, step_tol_share, scratch)
                track_kmh = np.sqrt(tx * tx + ty * ty) * 3.6
                out[i] = track_kmh if np.isfinite(track_kmh) else (v_base * 3.6 if based else vi)
                if out[i] <= standing_kmh:
                    flag |= STANDING
            elif based and disp <= sigmas * sigma * root2:  # within the noise floor: standing
                out[i] = 0.0
                flag |= STANDING
            elif based:  # moving: the jump-filtered short-window track (follows speed changes at once; jittery
                # under metres of noise, which thresholds on standing, decided above, do not see)
                tx, ty = _track(st, sx, sy, so, ns, track_ms, predict_ms, step_tol_kmh, step_tol_share, scratch)
                track_kmh = np.sqrt(tx * tx + ty * ty) * 3.6
                out[i] = track_kmh if np.isfinite(track_kmh) else v_base * 3.6
            else:  # no baseline yet (a new machine, after a gap): the short-window track, else what was reported
                tx, ty = _track(st, sx, sy, so, ns, track_ms, predict_ms, step_tol_kmh, step_tol_share, scratch)
                track_kmh = np.sqrt(tx * tx + ty * ty) * 3.6
                out[i] = track_kmh if np.isfinite(track_kmh) else vi
            flags[i] = flag
            sigma = sigma_after
        estimates[m, 0], estimates[m, 1], estimates[m, 2] = mu, nw, suspect
        if last_ok:
            has[m] = True
            k_ints[0, n_kept], k_ints[1, n_kept], k_ints[2, n_kept] = last_t, 0, 0
            k_ints[4, n_kept], k_ints[5, n_kept], k_ints[6, n_kept], k_ints[7, n_kept] = ss, nt, vt, ht
            k_floats[0, n_kept], k_floats[1, n_kept], k_floats[2, n_kept] = last_x, last_y, mu
            k_floats[3, n_kept], k_floats[4, n_kept], k_floats[5, n_kept] = nw, cum, lv
            k_floats[6, n_kept], k_floats[7, n_kept], k_floats[8, n_kept], k_floats[9, n_kept] = ce, cn_, le, ln
            k_floats[10, n_kept] = suspect
            for k in range(ns):
                if np.isfinite(sx[k]) and st[k] > newest - (track_ms + predict_ms):
                    out_st[n_out_steps], out_sx[n_out_steps], out_sy[n_out_steps] = last_t - st[k], sx[k], sy[k]
                    out_so[n_out_steps] = so[k]
                    n_out_steps += 1
                    k_ints[1, n_kept] += 1
            for k in range(nc):
                if ct[k] > newest - trust_ms:
                    out_c[n_out_checks] = (last_t - ct[k]) * 2 + (ca[k + 1] - ca[k])
                    n_out_checks += 1
                    k_ints[2, n_kept] += 1
            nbk = 0
            for k in range(nb):
                if bt[k] >= newest - keep_ms:
                    out_bt[n_out_buckets] = bt[k]
                    for f in range(NB):
                        out_bf[f, n_out_buckets] = bf[f, k]
                    n_out_buckets += 1
                    nbk += 1
            k_ints[3, n_kept] = nbk
            n_kept += 1
    for j in range(m_c):  # machines without samples in this batch: as they were
        if not absent[j]:
            continue
        k_ints[0, n_kept], k_ints[1, n_kept], k_ints[2, n_kept], k_ints[3, n_kept] = c_ft[j], c_sn[j], c_cn[j], c_bn[j]
        k_ints[4, n_kept], k_ints[5, n_kept], k_ints[6, n_kept], k_ints[7, n_kept] = c_ss[j], c_nt[j], c_vt[j], \
            c_ht[j]
        k_floats[0, n_kept], k_floats[1, n_kept], k_floats[2, n_kept] = c_fx[j], c_fy[j], c_mu[j]
        k_floats[3, n_kept], k_floats[4, n_kept], k_floats[5, n_kept] = c_nw[j], c_cum[j], c_lv[j]
        k_floats[6, n_kept], k_floats[7, n_kept], k_floats[8, n_kept], k_floats[9, n_kept] = c_ce[j], c_cn2[j], \
            c_le[j], c_ln[j]
        k_floats[10, n_kept] = c_sus[j]
        for k in range(c_step_at[j], c_step_at[j + 1]):
            out_st[n_out_steps], out_sx[n_out_steps], out_sy[n_out_steps] = c_st[k], c_sx[k], c_sy[k]
            out_so[n_out_steps] = c_so[k]
            n_out_steps += 1
        for k in range(c_check_at[j], c_check_at[j + 1]):
            out_c[n_out_checks] = c_packed[k]
            n_out_checks += 1
        for k in range(c_bucket_at[j], c_bucket_at[j + 1]):
            out_bt[n_out_buckets] = c_bt[k]
            for f in range(NB):
                out_bf[f, n_out_buckets] = c_bf[f * n_buckets + k]
            n_out_buckets += 1
        n_kept += 1
    ints = np.concatenate((k_ints[:, :n_kept].ravel(), out_st[:n_out_steps], out_so[:n_out_steps],
                           out_c[:n_out_checks], out_bt[:n_out_buckets]))
    floats = np.concatenate((k_floats[:, :n_kept].ravel(), out_sx[:n_out_steps], out_sy[:n_out_steps],
                             out_bf[:, :n_out_buckets].ravel()))
    return out, flags, noise, based_out, has, ints, floats, estimates


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
    motion_over_ground(np.array(["m", "m"], object), np.array([0, 1000]), np.zeros(2), np.zeros(2), np.ones(2), {})


_compile()


def estimate_noise(machine: np.ndarray, t_ms: np.ndarray, x: np.ndarray, y: np.ndarray, speed_kmh: np.ndarray,
                   carried: dict, settings: MotionSettings | None = None) -> tuple[np.ndarray, dict]:
    """Noise (m per axis) per sample and the carry for the next batch.

    ``estimate_noise(machine, t_ms, x, y, speed_kmh, carried, settings=None) -> (noise_m, carried)``: rows grouped
    by machine in time order, x, y in metres on a local plane, ``carried`` what the previous call returned ({} at
    first). The walk of ``motion_over_ground`` (which returns the speed and standing too); a
    thin entry point for services that need only the noise.
    """
    motion, kept = motion_over_ground(machine, t_ms, x, y, speed_kmh, carried, settings)
    return motion.noise_m, kept
