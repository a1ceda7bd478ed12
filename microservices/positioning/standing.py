"""Where a standing machine is, and how well each position is known.

Why: a standalone receiver's fixes scatter by metres while the machine stands still. Taken sample by sample, a
truck queueing at a zone's edge then enters and leaves the zone on jitter alone. A machine that stands (by its
own speed first: microservices/motion.py) cannot cross a border, and the longer it stands the better the mean of
its fixes says where it is: its position is that mean, and its uncertainty shrinks with the time it has stood, as
the receiver's errors decorrelate. Zone hysteresis (results.py) is scaled to this uncertainty, so an RTK machine
keeps sharp edges and a standalone one gets margins of metres.

The mean is summed in integer millimetres and carried per machine, so any split of the same telemetry into batches
gives the same positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Placed:
    """Final samples' positions with a standing machine's fixes averaged, and their uncertainty."""

    x: np.ndarray
    y: np.ndarray
    sigma_m: np.ndarray  # standard deviation of the position per axis, m
    held_from: np.ndarray  # ms: since when the position holds (a standing machine's: since it stopped)
    carry: dict[int, list[int]]  # per machine code: the open standing run [start ms, fixes, sum x mm, sum y mm,
    # last ms]


def place(g: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, good: np.ndarray, standing: np.ndarray,
          noise_m: np.ndarray, carried: list[list[int] | None], decorrelation_s: float, gap_ms: int) -> Placed:
    """Positions of samples sorted by (machine ``g``, time): a standing sample takes the mean of its machine's good
    fixes since it stopped (``carried[code]`` is the run open before these samples: [start ms, fixes, sum x mm,
    sum y mm, last ms]); the uncertainty is ``noise_m`` per axis divided by the square root of the independent looks the
    run has had (one per ``decorrelation_s`` of standing, plus the first). A gap longer than ``gap_ms`` ends a run."""
    n = len(t)
    first_of_machine = np.r_[True, g[1:] != g[:-1]]
    gap = np.r_[False, np.diff(t) > gap_ms] & ~first_of_machine
    previous_standing = np.r_[False, standing[:-1]] & ~first_of_machine & ~gap
    open_before = np.zeros(n, dtype=bool)  # the machine's first sample continues the run carried in
    for row in np.flatnonzero(first_of_machine & standing):
        run = carried[g[row]]
        open_before[row] = run is not None and t[row] - run[4] <= gap_ms
    run_start = standing & ~previous_standing & ~open_before
    # each standing sample's run: the index of its first sample here
    start_index = np.where(run_start | (first_of_machine & standing), np.arange(n), -1)
    start_index = np.maximum.accumulate(np.where(standing, start_index, np.arange(n)))
    use = standing & good & np.isfinite(x) & np.isfinite(y)
    x_mm = np.where(use, np.rint(np.nan_to_num(x) * 1000), 0).astype(np.int64)
    y_mm = np.where(use, np.rint(np.nan_to_num(y) * 1000), 0).astype(np.int64)
    cx, cy, cn = (np.r_[0, np.cumsum(v)] for v in (x_mm, y_mm, use.astype(np.int64)))
    base = start_index
    sum_x, sum_y, count = cx[1:] - cx[base], cy[1:] - cy[base], cn[1:] - cn[base]
    run_t0 = t[base].astype(np.int64)
    inherit = open_before[base]  # runs that continue the carried one
    if inherit.any():
        runs = np.array([run if run is not None else [0, 0, 0, 0, 0] for run in carried], dtype=np.int64)
        extra = runs[g[base]]
        run_t0 = np.where(inherit, extra[:, 0], run_t0)
        count = count + np.where(inherit, extra[:, 1], 0)
        sum_x = sum_x + np.where(inherit, extra[:, 2], 0)
        sum_y = sum_y + np.where(inherit, extra[:, 3], 0)
    averaged = standing & (count > 0)
    safe = np.maximum(count, 1)
    px = np.where(averaged, sum_x / safe / 1000.0, x)
    py = np.where(averaged, sum_y / safe / 1000.0, y)
    stood_s = np.where(standing, (t - run_t0) / 1000.0, 0.0)
    looks = 1.0 + stood_s / decorrelation_s
    sigma = np.asarray(noise_m, float) / np.sqrt(np.where(averaged, looks, 1.0))
    carry: dict[int, list[int]] = {}
    last = np.r_[g[1:] != g[:-1], True]
    for row in np.flatnonzero(last & standing):
        carry[int(g[row])] = [int(run_t0[row]), int(count[row]), int(sum_x[row]), int(sum_y[row]), int(t[row])]
    return Placed(px, py, sigma, np.where(standing, run_t0, t).astype(np.int64), carry)


def carried_runs(ids: np.ndarray, machines: dict[str, Any]) -> list[list[int] | None]:
    """Each machine's standing run open at its last final sample (None: it was moving)."""
    return [(machines.get(m) or {}).get("standing") for m in ids]
