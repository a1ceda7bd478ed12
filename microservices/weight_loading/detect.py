"""Haul cycle detection from one hauler's payload and speed: vectorised features, a phase machine per cycle.

Why this shape: ``process`` must be incremental and deterministic, so each hauler carries a
short buffer of raw samples and a phase (``unknown`` -> ``empty`` -> ``loading`` -> ``hauling``
-> ``empty`` ...) in the service state. Every feature is a *trailing* time window (a rolling
median over ``smooth_s``), so a feature at time t depends only on samples in (t - w, t]; the
buffer keeps ``context_s`` of samples before the first instant still undecided, and an event
is emitted only once every sample it depends on exists. Splitting the telemetry differently
therefore gives the same cycles. Loops run over phases and cycles, never over samples (the trailing median's
sliding window is the one per-sample loop, compiled).

Detection follows docs/DOMAIN.md §Haul cycle: load start when payload starts rising from near
empty while the hauler stands; loaded when payload is high and the hauler drives away;
dump when payload falls from loaded to near empty; hysteresis (empty/loaded thresholds as
fractions of rated) and minimum durations keep noise and body bounce from splitting or
merging cycles. The payload of a cycle is the *settled* value: the median of the readings
between the last loader pass and just after drive-off at low speed (docs/DOMAIN.md: "take the
settled value near the end of loading or the start of the haul, not a peak").
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pandas as pd

from microservices.ground_speed import insert_sorted, remove_sorted
from microservices.packed import pack, unpack
from microservices.weight_loading.settings import WeightLoadingSettings, band_of

NS = 1_000_000_000
FIELDS = ("t", "p", "v", "lat", "lon", "fuel", "eh")  # buffer columns: ts (ns), payload, speed, ...
SOURCE = {"p": "payload_kg", "v": "speed_kmh", "lat": "lat", "lon": "lon", "fuel": "fuel_used_l",
          "eh": "engine_hours"}
MAX_BUFFER_S = 3 * 3600  # a hauler that never drives off keeps at most this much history (s)


def context_s(settings: WeightLoadingSettings) -> float:
    """Seconds of samples a trailing feature needs before the first instant still undecided."""
    return 2 * settings.smooth_s + 2.0


def trailing_median(t: np.ndarray, x: np.ndarray, window_s: float) -> np.ndarray:
    """Median of ``x`` over (t - window, t] for every sample (t strictly increasing, as a merged buffer is); NaNs
    ignored; exact (the mean of the middle two as numpy's), so chunk-invariant."""
    return _trailing_median(np.asarray(t, np.int64), np.asarray(x, np.float64), np.int64(int(window_s * NS)))


@numba.njit(cache=True, nogil=True)
def _trailing_median(t: np.ndarray, x: np.ndarray, window_ns: np.int64) -> np.ndarray:  # pragma: no cover
    """The window's readings kept sorted as it slides (one in, the old ones out): compiled, since it is the one
    per-sample loop of every call, over a hauler's whole buffer (a whole-array version built and sorted an
    n x window matrix per call, the largest share of a small batch's cost)."""
    n = len(t)
    out = np.empty(n)
    ordered = np.empty(n)
    k = 0  # readings in the window
    lo = 0  # its oldest sample
    for i in range(n):
        if x[i] == x[i]:  # not NaN
            insert_sorted(ordered, k, x[i])
            k += 1
        while t[lo] <= t[i] - window_ns:
            if x[lo] == x[lo]:
                remove_sorted(ordered, k, x[lo])
                k -= 1
            lo += 1
        out[i] = (ordered[(k - 1) // 2] + ordered[k // 2]) / 2.0 if k else np.nan
    return out


trailing_median(np.zeros(2, np.int64), np.zeros(2), 1.0)  # compiled (or loaded from numba's cache) at import


def batch_arrays(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """A batch's telemetry as buffer arrays (ts as int ns, NaN where a field is missing), once per call."""
    out = {"t": rows["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64)}
    for key, column in SOURCE.items():
        out[key] = float_column(rows, column)
    return out


def readable_payload(p: np.ndarray, rated: np.ndarray, s: WeightLoadingSettings) -> np.ndarray:
    """Payload readings with 'no reading' as NaN: the weighing system's sentinels (-99 ...) and values below minus
    the zero tolerance (``tare_min_fraction`` of each row's ``rated``), which no load on a body can give; a slightly
    negative reading of an empty body is a reading."""
    with np.errstate(invalid="ignore"):
        absent = p < -s.tare_min_fraction * rated
    for sentinel in s.payload_sentinels:
        absent |= p == sentinel
    return np.where(absent, np.nan, p) if absent.any() else p


def float_column(rows: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column as float64 (NaN for missing or non-numeric values, all NaN when absent)."""
    if column not in rows:
        return np.full(len(rows), np.nan)
    series = rows[column]
    if series.dtype.kind == "f":
        return series.to_numpy(dtype=float)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def buffer_from_state(saved: dict[str, str] | None) -> dict[str, np.ndarray]:
    """The buffer kept in the service state (packed arrays) as arrays."""
    if not saved:
        return {k: np.empty(0, dtype=np.int64 if k == "t" else float) for k in FIELDS}
    t = unpack(saved["t"], np.int64)
    return {"t": t, **dict(zip(FIELDS[1:], unpack(saved["x"]).reshape(len(FIELDS) - 1, len(t)), strict=True))}


def buffer_to_state(buf: dict[str, np.ndarray], keep_from: int) -> dict[str, str]:
    """The samples at or after ``keep_from`` (ns), packed (``microservices/packed.py``: a fleet's buffers are
    most of the state, and a JSON round trip of them as numbers cost more than the step): the times, and the
    other fields one after the other."""
    i = int(np.searchsorted(buf["t"], keep_from, side="left"))
    return {"t": pack(buf["t"][i:], np.int64), "x": pack(np.concatenate([buf[k][i:] for k in FIELDS[1:]]))}


def merge_buffers(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Old buffer followed by new samples, in time order, one sample per timestamp."""
    if len(old["t"]) == 0:
        merged = new
    else:
        merged = {k: np.concatenate([old[k], new[k]]) for k in FIELDS}
    t = merged["t"]
    if len(t) > 1 and (np.diff(t) <= 0).any():  # only a late or repeated sample gets here
        order = np.argsort(t, kind="stable")
        t_sorted = t[order]
        keep = np.ones(len(t), dtype=bool)
        keep[1:] = t_sorted[1:] != t_sorted[:-1]
        merged = {k: v[order][keep] for k, v in merged.items()}
    return merged


def _first(mask: np.ndarray, start: int, stop: int | None = None) -> int:
    """Index of the first True in mask[start:stop], or -1."""
    hits = np.flatnonzero(mask[start:stop])
    return int(hits[0]) + start if len(hits) else -1


def _last(mask: np.ndarray, start: int, stop: int) -> int:
    """Index of the last True in mask[start:stop], or -1."""
    hits = np.flatnonzero(mask[start:stop])
    return int(hits[-1]) + start if len(hits) else -1


class Features:
    """Trailing features of one hauler's buffer, computed once per call."""

    def __init__(self, buf: dict[str, np.ndarray], rated: float, s: WeightLoadingSettings) -> None:
        self.t = buf["t"]
        self.p = buf["p"]
        self.v = np.nan_to_num(buf["v"], nan=0.0)  # a sample without speed counts as standing
        self.frac = trailing_median(self.t, self.p, s.smooth_s) / rated
        self.empty = self.frac < s.empty_fraction
        self.loaded = self.frac > s.loaded_fraction
        self.moving = self.v >= s.moving_kmh
        self.loaded_count = np.concatenate([[0], np.cumsum(self.loaded)])
        self.last_t = int(self.t[-1]) if len(self.t) else 0
        self.gap_before = np.flatnonzero(np.diff(self.t) > int(s.cycle_gap_s * NS)) + 1  # first samples after gaps

    def gap_after(self, start: int) -> int:
        """Index of the first sample after the first gap of more than ``cycle_gap_s`` following sample ``start``
        (the hauler was unseen in between), or -1."""
        at = int(np.searchsorted(self.gap_before, start, side="right"))
        return int(self.gap_before[at]) if at < len(self.gap_before) else -1

    def idx(self, t_ns: float, side: str = "left") -> int:
        return int(np.searchsorted(self.t, t_ns, side=side))

    def confirmed_empty(self, start: int, min_empty_s: float) -> tuple[int, bool]:
        """First empty sample at/after ``start`` that stays empty for ``min_empty_s``: (index, decided).

        A dip shorter than that (a sensor glitch) is merged into the loaded spell around it.
        Returns (-1, True) when none exists yet and (m, False) while m cannot be decided yet.
        """
        span = int(min_empty_s * NS)
        m = _first(self.empty, start)
        while m >= 0:
            end = self.idx(self.t[m] + span, side="right")
            if self.loaded_count[end] - self.loaded_count[m + 1] > 0:  # loaded again within the span
                q = _first(self.loaded, m + 1, end)
                m = _first(self.empty, q + 1)
                continue
            return m, self.last_t >= self.t[m] + span
        return -1, True

    def drive_off(self, start: int, min_drive_s: float) -> tuple[int, bool]:
        """First sample at/after ``start`` from which the hauler keeps moving for ``min_drive_s``."""
        span = int(min_drive_s * NS)
        k = _first(self.moving, start)
        while k >= 0:
            stop = _first(~self.moving, k + 1)
            if stop >= 0 and self.t[stop] <= self.t[k] + span:
                k = _first(self.moving, stop + 1)
                continue
            return k, stop >= 0 or self.last_t >= self.t[k] + span
        return -1, True


def count_passes(f: Features, lo: int, hi: int, rated: float, s: WeightLoadingSettings) -> int:
    """Loader passes in samples [lo, hi): rising edges of 'payload rose by a pass within the last lag'."""
    if hi <= lo:
        return 0
    lag = int((s.smooth_s + 1.0) * NS)
    before = np.searchsorted(f.t, f.t[lo:hi] - lag, side="right") - 1
    ok = before >= 0
    rise = np.zeros(hi - lo, dtype=bool)
    rise[ok] = (f.frac[lo:hi][ok] - f.frac[before[ok]]) > s.step_fraction
    return int(np.count_nonzero(rise[1:] & ~rise[:-1]) + (1 if len(rise) and rise[0] else 0))


def _median(values: np.ndarray) -> float | None:
    """The median of the finite values (None without one): np.median's value, without its per-call overhead,
    which dominated settling a load (a few dozen readings per window, several windows per load)."""
    ordered = np.sort(values)  # NaN sorts last
    n = len(ordered) - int(np.count_nonzero(np.isnan(ordered)))
    return float((ordered[(n - 1) // 2] + ordered[n // 2]) / 2) if n else None


def _drifted(standing: np.ndarray, rolling: np.ndarray, tolerance_kg: float) -> bool:
    """Do the standing readings after the last pass sit off the rolling ones by more than ``tolerance_kg`` and by
    more than three times the two medians' noise (a median's standard error: 1.25 x 1.48 MAD / sqrt(n)) can
    explain?"""
    standing, rolling = standing[~np.isnan(standing)], rolling[~np.isnan(rolling)]
    if len(rolling) == 0:
        return False
    if len(standing) == 0:
        return True
    a, b = _median(standing) or 0.0, _median(rolling) or 0.0
    noise2 = sum((1.86 * (_median(np.abs(x - m)) or 0.0)) ** 2 / len(x) for x, m in ((standing, a), (rolling, b)))
    return abs(a - b) > max(tolerance_kg, 3.0 * float(np.sqrt(noise2)))


def _iso(t_ns: float | None) -> pd.Timestamp | None:
    return None if t_ns is None else pd.Timestamp(int(t_ns), unit="ns", tz="UTC")


def settle_load(f: Features, buf: dict[str, np.ndarray], load: dict[str, Any], k: int, rated: float,
                s: WeightLoadingSettings, after_s: float) -> dict[str, Any]:
    """Close the loading phase at drive-off ``k``: settled payload (from readings up to ``after_s`` after the
    drive-off), loaded_at, passes, load position. Every window is a time range: sliced, never a whole-buffer mask
    (a catch-up batch holds hours of a hauler's samples)."""
    rise, t_k = f.idx(load["rise"]), int(f.t[k])
    p, v = f.p, f.v
    post_end = f.idx(t_k + int(after_s * NS), side="right")
    post = p[k:post_end][v[k:post_end] <= s.settle_max_kmh]  # rolling slowly after the drive-off
    near = p[f.idx(t_k - 6 * NS):k]  # the few readings just before drive-off give, with those, a first guess
    guess = _median(np.concatenate([near, post])) if len(near) + len(post) else float(p[k])
    # the last loader pass: the last reading (before drive-off) still a pass below the final level
    last_low = _last(p[rise:k] < (guess or 0.0) - s.step_fraction * rated, 0, k - rise)
    loaded_i = rise + last_low + 1 if last_low >= 0 else rise
    loaded_at = int(f.t[loaded_i]) if loaded_i < k else t_k
    first = f.idx(max(loaded_at, t_k - int(s.settle_before_s * NS)))
    standing = p[first:k][v[first:k] <= s.settle_max_kmh]
    if _drifted(standing, post, s.standing_drift_fraction * rated):
        standing = standing[:0]  # the standing readings drifted (strut friction, temperature): the rolling ones count
    window = np.concatenate([standing, post])
    settled = _median(window)
    if settled is None:
        settled = guess
    # load start: the hauler stopped at the spot (last moving reading before the first rise)
    floor = max(int(load["rise"]) - int(s.max_spot_s * NS), int(load["floor"]))
    lo = f.idx(floor)
    last_move = _last(f.moving, lo, rise)
    load_start = int(f.t[last_move + 1]) if last_move >= 0 else int(f.t[lo] if lo < len(f.t) else load["rise"])
    load_start = min(load_start, int(load["rise"]))
    start_i = f.idx(load_start)
    # zero offset: the empty body's median reading before the first pass; off zero by more than the weighing's
    # accuracy, it is taken off the load (a load cell reading 2.5 t when empty adds 2.5 t to every load)
    rise_i = f.idx(int(load["rise"]))
    tare = _median(p[lo:rise_i][f.frac[lo:rise_i] < s.empty_fraction]) or 0.0
    tare = tare if tare > s.tare_min_fraction * rated else 0.0
    passes = count_passes(f, max(start_i - 1, 0), k + 1, rated, s)  # every rise while standing at the loader
    return {
        **load,
        "load_start": load_start,
        "loaded_at": loaded_at,
        "haul_start": t_k,
        "payload_kg": float(settled) - tare,
        "settled_raw": float(settled),
        "tare_kg": tare,
        "settle_samples": int(np.count_nonzero(~np.isnan(window))),
        "passes": passes,
        "load_lat": _median(buf["lat"][start_i:k]),
        "load_lon": _median(buf["lon"][start_i:k]),
        "fuel0": None if np.isnan(buf["fuel"][start_i]) else float(buf["fuel"][start_i]),
        "eh0": None if np.isnan(buf["eh"][start_i]) else float(buf["eh"][start_i]),
        # known once the drive-off is confirmed and the post-drive-off window has passed
        "known_at": t_k + int(max(s.min_drive_off_s, after_s) * NS),
    }


def _may_overload(f: Features, load: dict[str, Any], k: int, rated: float, s: WeightLoadingSettings) -> bool:
    """Can the overload alert's first estimate (a median of readings from the first rise to ``min_drive_off_s``
    after drive-off ``k``, less a tare >= 0) exceed the over-120 limit? Not when no such reading does: then it
    is not worked out (almost every load), which keeps the alert's cost off the settling of each load."""
    hi = f.idx(int(f.t[k]) + int(s.min_drive_off_s * NS), side="right")
    return bool(np.any(f.p[f.idx(load["rise"]):hi] > s.over_120_fraction * rated))


def close_cycle(f: Features, buf: dict[str, np.ndarray], load: dict[str, Any], m: int, rated: float,
                s: WeightLoadingSettings) -> tuple[dict[str, Any], int]:
    """Close the hauling phase at confirmed-empty sample ``m``: dump start and end, dump position."""
    d0 = max(f.idx(load["haul_start"]), f.idx(f.t[m] - int(s.dump_search_s * NS)))
    full = f.frac >= load.get("settled_raw", load["payload_kg"]) / rated - s.step_fraction
    s_i = _last(full, d0, m)
    s_i = s_i if s_i >= 0 else d0
    end = f.idx(f.t[m] + int(s.min_empty_s * NS), side="right")
    done = _first(f.p < s.dumped_fraction * rated, s_i, end)
    done = done if done >= 0 else m
    dump_start, dumped_at = int(f.t[s_i]), int(f.t[done])
    at_dump = (f.t >= dump_start) & (f.t <= dumped_at)
    fuel1 = None if np.isnan(buf["fuel"][done]) else float(buf["fuel"][done])
    eh1 = None if np.isnan(buf["eh"][done]) else float(buf["eh"][done])
    cycle = {
        "load_start": load["load_start"], "loaded_at": load["loaded_at"], "haul_start": load["haul_start"],
        "dump_start": dump_start, "dumped_at": dumped_at, "payload_kg": load["payload_kg"],
        "passes": load["passes"], "settle_samples": load["settle_samples"],
        "load_lat": load["load_lat"], "load_lon": load["load_lon"],
        "dump_lat": _median(buf["lat"][at_dump]), "dump_lon": _median(buf["lon"][at_dump]),
        "fuel0": load["fuel0"], "eh0": load["eh0"], "fuel1": fuel1, "eh1": eh1,
    }
    return cycle, done


def advance(buf: dict[str, np.ndarray], ms: dict[str, Any], rated: float,
            s: WeightLoadingSettings) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Run one hauler's phase machine over its buffer: finished cycles, first estimates of loads that drove off
    (``min_drive_off_s`` after it: the overload alert's, while the truck is still at the loader), and the new state.

    ``ms`` (the machine's state without its buffer) holds ``phase``, ``live`` (ns: the first
    instant still undecided), ``floor`` (ns: the last dump, before which no load starts) and
    the open ``load``. Returns (cycles, loads settled in this call, new machine state with buffer).
    """
    ms = dict(ms)
    phase, live = ms.get("phase", "unknown"), int(ms.get("live", 0))
    floor = int(ms.get("floor", 0))
    load: dict[str, Any] | None = ms.get("load")
    cycles: list[dict] = []
    settled: list[dict] = []
    if len(buf["t"]) == 0:
        return cycles, settled, {**ms, "buf": buffer_to_state(buf, 0)}
    f = Features(buf, rated, s)
    ctx = int(context_s(s) * NS)
    keep = live - ctx
    while True:
        i0 = f.idx(live)
        if phase == "unknown":
            j = _first(f.empty, i0)
            if j < 0:
                live = f.last_t
                keep = live - ctx
                break
            phase, live, floor = "empty", int(f.t[j]), int(f.t[j])
            continue
        if phase == "empty":
            j = _first(f.loaded, i0)
            r = _last(f.empty, i0, j if j >= 0 else len(f.t))
            if j < 0:  # no load yet: keep what a load starting after the last empty reading would need
                if r >= 0:
                    live = max(live, int(f.t[r]) - int(s.max_spot_s * NS))
                    live = min(live, int(f.t[r]))
                keep = max(live, floor) - ctx
                break
            g = f.gap_after(r) if r >= 0 else -1
            if 0 <= g <= j:  # first seen loaded after a gap: its loading was not observed
                phase, live = "unknown", int(f.t[g])
                continue
            rise = int(f.t[r + 1]) if r + 1 < len(f.t) else int(f.t[j])
            load = {"a": int(f.t[j]), "rise": rise, "floor": floor}
            phase = "loading"
            continue
        if phase == "loading":
            assert load is not None
            a = f.idx(load["a"])
            k, k_decided = f.drive_off(a, s.min_drive_off_s)
            m, m_decided = f.confirmed_empty(a, s.min_empty_s)
            need = int(max(s.min_drive_off_s, s.settle_after_s) * NS)
            g = f.gap_after(a)
            if g >= 0 and (k < 0 or k >= g) and (m < 0 or m >= g):  # the load's end was not observed
                phase, live, load = "unknown", int(f.t[g]), None
                continue
            wait = m >= 0 and (k < 0 or m < k) and not m_decided
            if m >= 0 and (k < 0 or m < k) and m_decided:  # emptied again before driving off: not a load
                phase, live, floor, load = "empty", int(f.t[m]), int(f.t[m]), None
                continue
            if wait or k < 0 or not k_decided or f.last_t < f.t[k] + need:
                if not wait and k >= 0 and k_decided and not load.get("alerted"):  # driven off: first estimate
                    if _may_overload(f, load, k, rated, s):
                        settled.append(settle_load(f, buf, load, k, rated, s, s.min_drive_off_s))
                    load = {**load, "alerted": True}
                keep = max(load["rise"] - int(s.max_spot_s * NS), load["floor"]) - ctx
                keep = max(keep, f.last_t - MAX_BUFFER_S * NS)
                break
            if not load.get("alerted") and _may_overload(f, load, k, rated, s):
                settled.append(settle_load(f, buf, load, k, rated, s, s.min_drive_off_s))
            load = settle_load(f, buf, load, k, rated, s, s.settle_after_s)
            phase = "hauling"
            continue
        if phase == "hauling":
            assert load is not None
            m, decided = f.confirmed_empty(f.idx(max(load["haul_start"], live)), s.min_empty_s)
            g = f.gap_after(f.idx(load["haul_start"]))
            if g >= 0 and (m < 0 or m >= g):  # the dump was not observed
                phase, live, load = "unknown", int(f.t[g]), None
                continue
            if m < 0 or not decided:  # still hauling: keep what the dump search will need
                pending = int(f.t[m]) if m >= 0 else f.last_t
                live = max(live, load["haul_start"], pending - int(s.dump_search_s * NS))
                keep = live - ctx
                break
            if (f.t[m] - load["a"]) / NS >= s.min_loaded_s:
                cycle, done = close_cycle(f, buf, load, m, rated, s)
                cycles.append(cycle)
                ms["prev_dump"] = {"t": cycle["dumped_at"], "fuel": cycle["fuel1"], "eh": cycle["eh1"]}
            phase, live, floor, load = "empty", int(f.t[m]), int(f.t[m]), None
            continue
        raise ValueError(f"unknown phase {phase!r}")
    ms.update(phase=phase, live=live, floor=floor, load=load)
    ms["buf"] = buffer_to_state(buf, keep)
    return cycles, settled, ms


def cycle_rows(machine_id: str, cycles: list[dict], rated: float, prev_dump: dict | None,
               s: WeightLoadingSettings) -> tuple[list[dict], dict | None]:
    """Table rows for finished cycles (segment durations, fuel, band); returns the last dump for the next."""
    rows = []
    for c in cycles:
        weighed = c["payload_kg"] is not None  # a cycle found from the track alone has no measured payload
        frac = c["payload_kg"] / rated if weighed else None
        back = None
        if prev_dump is not None and 0 <= (c["load_start"] - prev_dump["t"]) / NS <= s.max_return_s:
            back = prev_dump
        rows.append({
            "machine_id": machine_id,
            "load_start": _iso(c["load_start"]),
            "loaded_at": _iso(c["loaded_at"]),
            "haul_start": _iso(c["haul_start"]),
            "dump_start": _iso(c["dump_start"]),
            "dumped_at": _iso(c["dumped_at"]),
            "payload_kg": round(c["payload_kg"], 1) if weighed else None,
            "rated_payload_kg": float(rated),
            "payload_pct": round(100 * frac, 2) if frac is not None else None,
            "band": band_of(frac, s) if frac is not None else None,
            "passes": int(c["passes"]) if weighed else None,
            "load_s": (c["haul_start"] - c["load_start"]) / NS,
            "haul_s": (c["dump_start"] - c["haul_start"]) / NS,
            "dump_s": (c["dumped_at"] - c["dump_start"]) / NS,
            "return_s": None if back is None else (c["load_start"] - back["t"]) / NS,
            "fuel_used_l": _delta(c["fuel1"], c["fuel0"]),
            "fuel_return_l": None if back is None else _delta(c["fuel0"], back["fuel"]),
            "engine_hours": _delta(c["eh1"], c["eh0"]),
            "load_lat": c["load_lat"], "load_lon": c["load_lon"],
            "dump_lat": c["dump_lat"], "dump_lon": c["dump_lon"],
            "settle_samples": int(c["settle_samples"]) if weighed else None,
            "payload_source": "measured" if weighed else "none",
        })
        prev_dump = {"t": c["dumped_at"], "fuel": c["fuel1"], "eh": c["eh1"]}
    return rows, prev_dump


FLOAT_COLUMNS = ("payload_kg", "rated_payload_kg", "payload_pct", "load_s", "haul_s", "dump_s", "return_s",
                 "fuel_used_l", "fuel_return_l", "engine_hours", "load_lat", "load_lon", "dump_lat", "dump_lon")


def cycles_frame(rows: list[dict]) -> pd.DataFrame:
    """Cycle rows as a frame with fixed dtypes (an all-null column is still a float column)."""
    frame = pd.DataFrame(rows)
    for column in FLOAT_COLUMNS:
        if frame[column].dtype != np.float64:
            frame[column] = frame[column].astype(float)
    for column in ("passes", "settle_samples"):  # null for a cycle without a measured payload: ints or None
        if frame[column].dtype != np.int64:
            frame[column] = pd.Series([None if v is None or v != v else int(v) for v in frame[column]],
                                      index=frame.index, dtype=object)
    return frame


def _delta(end: float | None, start: float | None) -> float | None:
    """A counter difference; None when unknown or negative (a counter reset)."""
    if end is None or start is None or end < start:
        return None
    return round(end - start, 4)
