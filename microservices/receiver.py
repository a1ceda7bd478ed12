"""Each machine's GNSS receiver noise, estimated online, and the receiver class it implies.

Why: a position's error ranges from 2 cm (RTK) through half a metre (SBAS) to metres of white jitter
(standalone, the common receiver on construction equipment). A threshold on positions that is right for one is
wrong for the others, so services scale theirs to the machine's own noise, measured from its own fixes.

What is measured: the scatter of a fix against the fix one motion baseline earlier (``MotionSettings.baseline_s``,
10-30 s) while the machine stands, per axis (a displacement's axis component divided by sqrt 2). Over that lag
the scatter holds the white jitter and the slow drift alike, which is what a displacement over the baseline has to
rise above before it counts as motion. Evidence is a pair whose whole baseline the machine stood by its own
trusted speed; where that speed is absent or not trusted, a pair whose displacement is within ``GATE_SIGMAS`` of
the current estimate (self-consistent: a driving machine's displacement is far outside, a standing one's inside).

How: a running mean of log|axis displacement| (the log of a normal's magnitude has a fixed offset from the log of
its standard deviation, ``LOG_ABS_NORMAL``), each pair's deviation from the mean clipped to ``CLIP_LOW, CLIP_HIGH``
so that a GNSS jump of tens of metres moves an RTK estimate by a bounded step; each pair weighs the seconds since
the machine's previous sample (at most 1), so the memory is ``MEMORY_S`` seconds of standing whatever the sample
rate. Until evidence accumulates, a conservative standalone-level prior (``PRIOR_NOISE_M``, worth ``PRIOR_S``
seconds) holds: thresholds start wide, so a standing machine never drives off on jitter before its noise is known.

Batch splits: the estimate is updated sample by sample in time order inside ``ground_speed``'s walk (the pairs
need the fix one baseline back, which that walk carries), and each machine carries its two numbers (mean log,
weight) in the walk's state, so any split of the telemetry gives the same estimate bit for bit.
``motion.motion_from_fixes`` and ``ground_speed.motion_of_runs`` return it per sample (``noise_m``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

PRIOR_NOISE_M = 2.5  # standalone-level: what a machine is assumed to have until its fixes say otherwise
PRIOR_S = 10.0  # the prior weighs as much as this many seconds of standing evidence
MEMORY_S = 600.0  # the estimate averages over about this many seconds of standing evidence
MIN_NOISE_M = 0.005  # below a receiver's resolution; floor of the estimate
MAX_NOISE_M = 20.0
GATE_SIGMAS = 3.0  # without a trusted speed, a pair within this many estimated sigmas (per axis) is standing
CLIP_LOW, CLIP_HIGH = -4.0, 2.0  # a pair's log deviation from the estimate counts at most this much
LOG_ABS_NORMAL = -0.6351814227307391  # E[log |Z|] for a standard normal Z: -(Euler-Mascheroni + ln 2) / 2
RTK_MAX_M = 0.1  # centimetre-level: RTK fixed (and float at its worst)
SBAS_MAX_M = 1.0  # sub-metre: SBAS / DGNSS corrected; above it, metres: standalone
CLASSES = ("rtk", "sbas", "standalone")


def receiver_class(noise_m: float | np.ndarray) -> str | np.ndarray:
    """'rtk' (under 0.1 m per axis), 'sbas' (under 1 m) or 'standalone' (metres): physical bands of receivers,
    not fitted to any fleet. Vectorised: an array of noises gives an array of class names."""
    noise = np.asarray(noise_m, float)
    out = np.where(noise < RTK_MAX_M, "rtk", np.where(noise < SBAS_MAX_M, "sbas", "standalone"))
    return str(out) if out.ndim == 0 else out


PRIOR_LOG = math.log(PRIOR_NOISE_M) + LOG_ABS_NORMAL  # the running mean of log|axis displacement| at the prior


@numba.njit(cache=True, nogil=True)
def noise_of(mean_log: float) -> float:  # pragma: no cover - compiled
    """Noise (m per axis) from the running mean of log|axis displacement / sqrt 2|."""
    return min(max(math.exp(mean_log - LOG_ABS_NORMAL), MIN_NOISE_M), MAX_NOISE_M)


@numba.njit(cache=True, nogil=True)
def observe(mean_log: float, weight: float, dx_m: float, dy_m: float, w: float) -> tuple[float, float]:
    # pragma: no cover - compiled
    """The estimate after one pair: a fix's displacement (dx_m, dy_m, metres) from the fix one baseline before,
    weighing ``w`` seconds; returns (mean log, weight). A pair that did not move at all (a repeated fix, no new
    measurement) is not evidence."""
    if dx_m == 0.0 and dy_m == 0.0:
        return mean_log, weight
    total = min(weight + w, MEMORY_S)
    for d in (dx_m, dy_m):
        a = abs(d) / math.sqrt(2.0)
        dev = (math.log(a) if a > 0 else -1e9) - mean_log
        dev = min(max(dev, CLIP_LOW), CLIP_HIGH)
        mean_log += dev * (0.5 * w) / total
    return mean_log, total


def estimate_noise(machine: np.ndarray, t_ms: np.ndarray, x: np.ndarray, y: np.ndarray, speed_kmh: np.ndarray,
                   carried: dict, settings=None) -> tuple[np.ndarray, dict]:
    """Noise (m per axis) per sample and the carry for the next batch.

    ``estimate_noise(machine, t_ms, x, y, speed_kmh, carried, settings=None) -> (noise_m, carried)``: rows grouped
    by machine in time order, x, y in metres on a local plane, ``carried`` what the previous call returned ({} at
    first). The same walk as ``ground_speed.motion_over_ground`` (which returns the speed and standing too); a
    thin entry point for services that need only the noise.
    """
    from microservices.ground_speed import motion_over_ground

    motion, kept = motion_over_ground(machine, t_ms, x, y, speed_kmh, carried, settings)
    return motion.noise_m, kept


def seeds_for(state: dict | None, names: list[str]) -> np.ndarray:
    """Per machine (mean log, weight, newest time observed in ms, suspect speed value) from a ``noise_state``
    (NaN rows: not in it), to start the walk of machines it has no full carry for."""
    seeds = np.full((len(names), 4), np.nan)
    if state:
        at = {name: i for i, name in enumerate(state.get("ids", []))}
        for k, name in enumerate(names):
            if (i := at.get(name)) is not None:
                sus = state.get("sus", [None] * len(state["ids"]))[i]
                seeds[k] = state["mu"][i], state["nw"][i], state["t"][i], np.nan if sus is None else sus
    return seeds


def noise_state(state: dict | None, names: list[str], estimates: np.ndarray, newest_ms: np.ndarray) -> dict:
    """The compact JSON-able carry of a walk without its windows: per machine the running mean of log|axis
    displacement|, its weight (seconds of evidence), the newest sample time observed (a tail fed again is not
    observed twice) and the speed value caught disagreeing (None: none; a stuck signal stays suspect across
    batches); machines not in ``names`` keep what ``state`` had."""
    kept = {}
    if state:
        sus = state.get("sus", [None] * len(state.get("ids", [])))
        for i, name in enumerate(state.get("ids", [])):
            kept[name] = (state["mu"][i], state["nw"][i], state["t"][i], sus[i])
    for k, name in enumerate(names):
        old_t = kept.get(name, (0.0, 0.0, -(2 ** 62), None))[2]
        suspect = float(estimates[k, 2])
        kept[name] = (float(estimates[k, 0]), float(estimates[k, 1]), int(max(newest_ms[k], old_t)),
                      None if suspect != suspect else suspect)
    ids = sorted(kept)
    return {"v": 1, "ids": ids, "mu": [kept[i][0] for i in ids], "nw": [kept[i][1] for i in ids],
            "t": [kept[i][2] for i in ids], "sus": [kept[i][3] for i in ids]}


def noise_m_of_state(state: dict | None, name: str) -> float:
    """A machine's current noise estimate (m per axis) from a ``noise_state`` (the prior when it has none)."""
    if state and name in state.get("ids", []):
        return float(noise_of(state["mu"][state["ids"].index(name)]))
    return PRIOR_NOISE_M
