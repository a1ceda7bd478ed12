"""Stops from the samples: where each hauler stood, how long, with its payload evidence, for ``track.py``'s legs.

Why compiled: finding a stop is a walk along each hauler's samples (standing runs joined across moving blips
shorter than a drive-off, the fixes of the last seconds of standing kept for the stop's position, payload
evidence counted per sample) and it runs for every hauler in every batch, faulty payload or not, so that the
track is ready the moment a payload sensor fails. As Python it cost weight loading a fifth of its rows per
second; fault handling may cost a tenth (issue #18), so the walk is one numba loop over all haulers of a batch
and Python sees only the stops it closes (a few per hauler and hour).

What the walk carries (``Walked.carried``, all haulers together, packed) holds each hauler's open stop, its
pending drive-off and its evidence counters from batch to batch, so any split of the samples gives the same stops.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba
import numpy as np

from microservices.packed import pack, unpack
from microservices.weight_loading.settings import WeightLoadingSettings

NS = 1_000_000_000
# evidence counters, cumulative per hauler: samples, payload missing, pairs of consecutive readings, pairs that
# changed, readings out of physical range, readings of an empty body (below ``empty_fraction`` of rated)
EVIDENCE = ("n", "missing", "pairs", "changed", "implausible", "low")
N_EVIDENCE = len(EVIDENCE)


class Stop(NamedTuple):
    """A stop that ended with a drive-off: start ``a`` and drive-off ``b`` (ns), evidence counters before each,
    fuel and engine hours at each, and the median of its last standing fixes (None without a fix)."""

    a: int
    b: int
    c0: list[float]
    c1: list[float]
    f0: float | None
    e0: float | None
    f1: float | None
    e1: float | None
    lat: float | None
    lon: float | None
    # 1: the hauler was unseen for more than cycle_gap_s since its previous stop closed; 2: and this stop began at
    # its first sample after that gap (it may have begun unseen)
    gap: int = 0


# what the walk carries, all haulers together (two arrays packed by microservices/packed.py, haulers in "ids"
# order): "ints" = INTS per hauler (last sample time, stop open, stop start, drive-off pending, drive-off time; ns;
# unseen for more than cycle_gap_s since the last stop closed),
# then how many fixes each hauler's open stop keeps, then their times; "floats" = FLOATS per hauler (last payload,
# counters now, counters at the stop's start, fuel and engine hours there, counters, fuel and engine hours at the
# drive-off), then the fixes' latitudes, then their longitudes
INTS, FLOATS = 6, 1 + 3 * len(EVIDENCE) + 4
NEW_INTS, NEW_FLOATS = [-1, 0, 0, 0, 0, 0], [np.nan] + [0.0] * (FLOATS - 1)


class Walked(NamedTuple):
    """What one batch's walk found, per hauler of the batch (in the order given), and what to carry."""

    stops: list[list[Stop]]  # the stops each closed, in time order
    seen: list[bool]  # it had a sample newer than its last one seen
    last_t: list[int]  # its newest sample (ns)
    open_since: list[int | None]  # when its open stop began (ns), None when driving
    carried: dict[str, Any]


def walk(runs: list[tuple[str, int, int]], t: np.ndarray, lat: np.ndarray, lon: np.ndarray, moving: np.ndarray,
         p: np.ndarray, fuel: np.ndarray, eh: np.ndarray, rated: np.ndarray, carried: dict[str, Any],
         s: WeightLoadingSettings) -> Walked:
    """The stops of each hauler's samples (``runs``: hauler, start row, stop row, in time order), carrying on
    from ``carried`` (``{}`` at first)."""
    ids = carried.get("ids", [])
    slot_of = {name: i for i, name in enumerate(ids)}
    names = [name for name, _, _ in runs]
    present = set(names)
    absent = [name not in present for name in ids]  # they carry on what they carried
    seen, ints, closed_ints, closed_floats, packed_ints, packed_floats = _walk(
        np.array([a for _, a, _ in runs], np.int64), np.array([b for _, _, b in runs], np.int64),
        np.asarray(t, np.int64), np.asarray(lat, float), np.asarray(lon, float), np.asarray(moving, np.bool_),
        np.asarray(p, float), np.asarray(fuel, float), np.asarray(eh, float), np.asarray(rated, float),
        np.array([slot_of.get(name, -1) for name in names], np.int64), np.array(absent, np.bool_),
        unpack(carried.get("ints"), np.int64), unpack(carried.get("floats")), np.array(NEW_INTS, np.int64),
        np.array(NEW_FLOATS),
        np.array([s.min_drive_off_s * NS, s.stop_position_s * NS, s.tare_min_fraction, s.payload_max_fraction,
                  s.empty_fraction, s.cycle_gap_s * NS]))
    found: list[list[Stop]] = [[] for _ in runs]
    e = len(EVIDENCE)
    for (hauler, a, b, gap), f in zip(closed_ints.tolist(), closed_floats.tolist(), strict=True):
        f0, e0, f1, e1, la, lo = f[2 * e:]  # NaN (no reading, no fix) as None
        found[hauler].append(Stop(a, b, f[:e], f[e:2 * e], None if f0 != f0 else f0, None if e0 != e0 else e0,
                                  None if f1 != f1 else f1, None if e1 != e1 else e1, None if la != la else la,
                                  None if lo != lo else lo, int(gap)))
    kept_ids = names + [name for name, a in zip(ids, absent, strict=True) if a]
    return Walked(found, seen.tolist(), ints[:, 0].tolist(),
                  [a if is_open else None for is_open, a in ints[:, 1:3].tolist()],
                  {"ids": kept_ids, "ints": pack(packed_ints, np.int64), "floats": pack(packed_floats)})


@numba.njit(cache=True, nogil=True)
def _walk(starts, ends, t, lat, lon, moving, p, fuel, eh, rated, slot, absent, c_packed_ints, c_packed_floats,
          new_ints, new_floats, parameters):  # pragma: no cover - compiled
    """The walk of every hauler h over rows starts[h]:ends[h] from its carried row slot[h] (-1: a new one);
    returns what it found and the new carry in PACKED layout: the haulers of the batch, then those carried and
    ``absent`` from it, as they were."""
    span, pos_span = np.int64(parameters[0]), np.int64(parameters[1])
    tare, most, empty, gap = parameters[2], parameters[3], parameters[4], np.int64(parameters[5])
    # the carry's layout (PACKED): INTS and FLOATS per hauler, then how many fixes each, then the fixes
    m_c, n_i, n_f = len(absent), len(new_ints), len(new_floats)
    c_ints, c_floats = c_packed_ints[:n_i * m_c].reshape(m_c, n_i), c_packed_floats[:n_f * m_c].reshape(m_c, n_f)
    c_fn = c_packed_ints[n_i * m_c:(n_i + 1) * m_c]
    c_fix_t, n_fixes = c_packed_ints[(n_i + 1) * m_c:], c_fn.sum()
    c_fix_la = c_packed_floats[n_f * m_c:n_f * m_c + n_fixes]
    c_fix_lo = c_packed_floats[n_f * m_c + n_fixes:]
    c_fix_at = np.zeros(m_c + 1, np.int64)
    c_fix_at[1:] = np.cumsum(c_fn)
    haulers = len(starts)
    n = len(t)
    e = N_EVIDENCE
    seen = np.zeros(haulers, np.bool_)
    ints, floats = np.empty((haulers + m_c, n_i), np.int64), np.empty((haulers + m_c, n_f))
    fix_n = np.zeros(haulers + m_c, np.int64)
    out_cap = len(c_fix_t) + n
    fix_t, fix_la, fix_lo = np.empty(out_cap, np.int64), np.empty(out_cap), np.empty(out_cap)
    n_fix_out = 0
    # closed stops: [hauler, start, drive-off] and [counters at start, at drive-off, f0, e0, f1, e1, lat, lon]
    closed_ints, closed_floats = np.empty((n + haulers, 4), np.int64), np.empty((n + haulers, 2 * e + 6))
    n_closed = 0
    for h in range(haulers):
        lo_row, hi_row, j0 = starts[h], ends[h], slot[h]
        st_i, st_f = ints[h], floats[h]  # views: [t, open, a, has_k, kt]; [lp, cum, c0, f0, e0, kc, kf, ke]
        st_i[:] = c_ints[j0] if j0 >= 0 else new_ints
        st_f[:] = c_floats[j0] if j0 >= 0 else new_floats
        cum, c0, kc = st_f[1:1 + e], st_f[1 + e:1 + 2 * e], st_f[3 + 2 * e:3 + 3 * e]
        # the open stop's kept fixes: carried ones, then this batch's (a window [f_lo, f_hi) of one buffer)
        k0, k1 = (c_fix_at[j0], c_fix_at[j0 + 1]) if j0 >= 0 else (0, 0)
        size = k1 - k0 + hi_row - lo_row
        buf_t, buf_la, buf_lo = np.empty(size, np.int64), np.empty(size), np.empty(size)
        f_lo, f_hi = 0, 0
        for k in range(k0, k1):
            buf_t[f_hi], buf_la[f_hi], buf_lo[f_hi] = c_fix_t[k], c_fix_la[k], c_fix_lo[k]
            f_hi += 1
        i = lo_row
        first_t = st_i[0]
        while i < hi_row and t[i] <= first_t:  # seen already (a replay restores the state)
            i += 1
        prev = st_f[0]
        while i < hi_row:
            seen[h] = True
            gapped = st_i[0] >= 0 and t[i] - st_i[0] > gap
            if gapped:  # unseen for long: an open stop is not continued across
                st_i[1], st_i[3], st_i[5] = 0, 0, 1
                f_lo = f_hi
            run_moving = moving[i]
            j = i + 1
            while j < hi_row and moving[j] == run_moving and t[j] - t[j - 1] <= gap:
                j += 1
            before = cum.copy()  # the counters before the run's first sample
            for r in range(i, j):
                has = np.isfinite(p[r])
                cum[0] += 1.0
                if not has:
                    cum[1] += 1.0
                    continue
                if np.isfinite(prev):  # consecutive readings (a missing one between them skipped)
                    cum[2] += 1.0
                    if p[r] != prev:
                        cum[3] += 1.0
                if p[r] < -tare * rated[h] or p[r] > most * rated[h]:
                    cum[4] += 1.0
                if p[r] < empty * rated[h]:
                    cum[5] += 1.0
                prev = p[r]
            if not run_moving:
                if st_i[1] and st_i[3]:  # standing again: did it move long enough before?
                    if t[i] > st_i[4] + span:
                        n_closed = _close(h, n_closed, st_i, st_f, buf_la, buf_lo, f_lo, f_hi, closed_ints,
                                          closed_floats)
                        st_i[1] = 0
                    else:
                        st_i[3] = 0  # a blip: still the same stop
                if not st_i[1]:
                    st_i[1], st_i[2], st_i[3] = 1, t[i], 0
                    if gapped:
                        st_i[5] = 2  # standing when first seen again: since when is unknown
                    c0[:] = before
                    st_f[1 + 2 * e], st_f[2 + 2 * e] = fuel[i], eh[i]
                    f_lo = f_hi
                # keep the fixes of the stop's last pos_span of standing
                had = f_hi > f_lo
                added = False
                cut = t[j - 1] - pos_span
                for r in range(i, j):
                    if t[r] > cut and np.isfinite(lat[r]) and np.isfinite(lon[r]):
                        buf_t[f_hi], buf_la[f_hi], buf_lo[f_hi] = t[r], lat[r], lon[r]
                        f_hi += 1
                        added = True
                if added and had:
                    while buf_t[f_lo] <= buf_t[f_hi - 1] - pos_span:
                        f_lo += 1
            elif st_i[1]:
                if not st_i[3]:
                    st_i[3], st_i[4] = 1, t[i]
                    kc[:] = before
                    st_f[3 + 3 * e], st_f[4 + 3 * e] = fuel[i], eh[i]
                if t[j - 1] >= st_i[4] + span:  # kept moving long enough: drove off
                    n_closed = _close(h, n_closed, st_i, st_f, buf_la, buf_lo, f_lo, f_hi, closed_ints,
                                      closed_floats)
                    st_i[1] = 0
            st_i[0], st_f[0] = t[j - 1], prev
            i = j
        if st_i[1]:
            for k in range(f_lo, f_hi):
                fix_t[n_fix_out], fix_la[n_fix_out], fix_lo[n_fix_out] = buf_t[k], buf_la[k], buf_lo[k]
                n_fix_out += 1
            fix_n[h] = f_hi - f_lo
    kept = haulers
    for j in range(m_c):  # haulers without samples in this batch: as they were
        if absent[j]:
            ints[kept], floats[kept], fix_n[kept] = c_ints[j], c_floats[j], c_fn[j]
            for k in range(c_fix_at[j], c_fix_at[j + 1]):
                fix_t[n_fix_out], fix_la[n_fix_out], fix_lo[n_fix_out] = c_fix_t[k], c_fix_la[k], c_fix_lo[k]
                n_fix_out += 1
            kept += 1
    packed_ints = np.concatenate((ints[:kept].ravel(), fix_n[:kept], fix_t[:n_fix_out]))
    packed_floats = np.concatenate((floats[:kept].ravel(), fix_la[:n_fix_out], fix_lo[:n_fix_out]))
    return seen, ints[:haulers], closed_ints[:n_closed], closed_floats[:n_closed], packed_ints, packed_floats


@numba.njit(cache=True, nogil=True)
def _close(h, n_closed, st_i, st_f, buf_la, buf_lo, f_lo, f_hi, closed_ints, closed_floats):  # pragma: no cover
    """Record hauler h's open stop as closed at its drive-off; returns the new count of closed stops."""
    e = N_EVIDENCE
    closed_ints[n_closed, 0], closed_ints[n_closed, 1], closed_ints[n_closed, 2] = h, st_i[2], st_i[4]
    closed_ints[n_closed, 3], st_i[5] = st_i[5], 0
    row = closed_floats[n_closed]
    row[:e], row[e:2 * e] = st_f[1 + e:1 + 2 * e], st_f[3 + 2 * e:3 + 3 * e]  # counters at start, at drive-off
    row[2 * e], row[2 * e + 1] = st_f[1 + 2 * e], st_f[2 + 2 * e]  # fuel, engine hours at start
    row[2 * e + 2], row[2 * e + 3] = st_f[3 + 3 * e], st_f[4 + 3 * e]  # ... at the drive-off
    if f_hi > f_lo:
        row[2 * e + 4], row[2 * e + 5] = np.median(buf_la[f_lo:f_hi]), np.median(buf_lo[f_lo:f_hi])
    else:
        row[2 * e + 4], row[2 * e + 5] = np.nan, np.nan
    return n_closed + 1


@numba.njit(cache=True, nogil=True)
def minute_sums(starts, ends, t, lon, lat, frame):  # pragma: no cover - compiled
    """Per run (rows starts[r]:ends[r], time order) and clock bin of ``frame[4]`` ns: the sums of x, y (metres on
    the tangent plane at lon, lat = frame[0], frame[1], frame[2] and frame[3] metres per degree) and the count of
    the fixes; returns (run, bin, sum x, sum y, count) per bin in order, NaN fixes left out."""
    lon0, lat0, east, north, width = frame[0], frame[1], frame[2], frame[3], np.int64(frame[4])
    cap = 0
    for r in range(len(starts)):
        cap += ends[r] - starts[r]
    run, minute, sx, sy, n = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap), np.empty(cap),
                              np.empty(cap, np.int64))
    g = -1
    for r in range(len(starts)):
        first = True
        for i in range(starts[r], ends[r]):
            if not (np.isfinite(lon[i]) and np.isfinite(lat[i])):
                continue
            m = t[i] // width
            if first or m != minute[g]:
                g += 1
                run[g], minute[g], sx[g], sy[g], n[g] = r, m, 0.0, 0.0, 0
                first = False
            sx[g] += (lon[i] - lon0) * east
            sy[g] += (lat[i] - lat0) * north
            n[g] += 1
    return run[:g + 1], minute[:g + 1], sx[:g + 1], sy[:g + 1], n[:g + 1]


def _compile() -> None:
    """Compile the walks (or load them from numba's cache) at import, not in the middle of a live stream:
    compiling holds the GIL for seconds, which stalls an ingest thread sharing the process."""
    t, zeros = np.array([0, NS], np.int64), np.zeros(2)
    walk([("h", 0, 2)], t, zeros, zeros, np.zeros(2, bool), zeros, zeros, zeros, np.ones(1), {},
         WeightLoadingSettings())
    minute_sums(np.zeros(1, np.int64), np.full(1, 2, np.int64), t, zeros, zeros, np.ones(5))


_compile()
