"""The simulator's haul cycles against real fleet-management records: payload spread, queues, loading, dumping.

    .venv/bin/python -m simulators.calibration --hours 4 --seeds 1 2

The records (``../shared/realdata/modular-dispatch-cycles``, or ``$SITEPULSE_REALDATA``; MIT, see its README
and LICENSE) are read where they lie, never copied. They hold no positions, so only per-cycle durations and
tonnes can be compared; the simulated figures come from the ground truth of a run with a behaviour profile
(``simulators.machines.BEHAVIOURS``). Payloads are compared as fractions of their median (the records name
no rated payload), times in seconds; the records' trucks are 290-t trucks under electric shovels, ours 28-56 t
trucks under wheel loaders and excavators, so loading time is compared per pass as well as whole.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulators.engine import simulate
from simulators.machines import BEHAVIOURS
from simulators.site import load_site

RECORDS_DIR = "modular-dispatch-cycles"
CYCLES_FILE = "StdShiftLoadsDumpsFuel.csv"
SENTINEL_T = 1000.0  # the records' few tonnages above this are sentinels, not loads
SHOVEL_PASS_T = 85.0  # a P&H 4100-class electric shovel dipper (~80-100 t): a 290-t truck takes ~3.5 passes
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def records_path() -> Path:
    """Where the real records lie: $SITEPULSE_REALDATA or ../shared/realdata beside the repository."""
    root = Path(os.environ.get("SITEPULSE_REALDATA") or Path(__file__).resolve().parents[2] / "shared" / "realdata")
    return root / RECORDS_DIR / CYCLES_FILE


@dataclass
class Distributions:
    """Per-cycle figures of one source, each an array (seconds or fraction of the median payload)."""

    payload: np.ndarray  # weighed loads over their median
    unweighed_share: float  # cycles recorded at 0 t (a sensor matter: not simulated as loads)
    loader_queue_s: np.ndarray
    loading_s: np.ndarray
    loading_per_pass_s: np.ndarray
    dumping_s: np.ndarray
    dump_queue_s: np.ndarray
    loaded_pause_s: np.ndarray  # last pass to driving off (not in the records; issue 30's recorded trucks)


def recorded(path: Path | None = None) -> Distributions:
    """The real records' distributions."""
    frame = pd.read_csv(path or records_path())
    tonnes = frame["Tons_x"]
    weighed = tonnes[(tonnes > 0) & (tonnes < SENTINEL_T)].to_numpy(float)
    passes = np.maximum(1.0, np.round(weighed.mean() / SHOVEL_PASS_T))
    return Distributions(
        payload=weighed / np.median(weighed), unweighed_share=float((tonnes == 0).mean()),
        loader_queue_s=frame["QueueTime_x"].dropna().to_numpy(float),
        loading_s=frame["LoadingTime"].dropna().to_numpy(float),
        loading_per_pass_s=frame["LoadingTime"].dropna().to_numpy(float) / passes,
        dumping_s=frame["DumpingTime"].dropna().to_numpy(float),
        dump_queue_s=frame["QueueTime_y"].dropna().to_numpy(float),
        loaded_pause_s=np.array([49.0, 60.0]))


def simulated(seeds: list[int], hours: float, behaviour: str = "recorded", haulers: int | None = None
              ) -> Distributions:
    """The same figures from the ground truth of simulated runs of the demo quarry."""
    cycles, queues = [], []
    for seed in seeds:
        sim = simulate(load_site(), duration_s=hours * 3600, seed=seed, haulers=haulers,
                       behaviour=BEHAVIOURS[behaviour])
        for _ in sim:
            pass
        records = sim.truth_records()
        cycles += [dict(r, seed=seed) for r in records if r["type"] == "cycle"]
        queues += [dict(r, seed=seed) for r in records if r["type"] == "queue"]
    c = pd.DataFrame(cycles)
    for column in ("load_start", "loaded_at", "haul_start", "dump_arrived_at", "dumped_at"):
        c[column] = pd.to_datetime(c[column], utc=True, format="ISO8601")
    q = pd.DataFrame(queues, columns=["seed", "machine_id", "zone", "queued_from", "queued_to"])
    q["queued_to"] = pd.to_datetime(q["queued_to"], utc=True, format="ISO8601")
    q["wait_s"] = (q["queued_to"] - pd.to_datetime(q["queued_from"], utc=True, format="ISO8601")).dt.total_seconds()

    def wait_before(zone_column: str, arrived_column: str) -> np.ndarray:
        """Each cycle's wait in the queue of its zone just before it reached its spot (0 without one)."""
        waits = []
        for row in c.itertuples():
            zone, arrived = getattr(row, zone_column), getattr(row, arrived_column)
            mine = q[(q["seed"] == row.seed) & (q["machine_id"] == row.machine_id) & (q["zone"] == zone)
                     & (q["queued_to"] <= arrived) & (q["queued_to"] >= arrived - pd.Timedelta(minutes=5))]
            waits.append(float(mine["wait_s"].sum()))
        return np.array(waits)

    payload = (c["payload_kg"] / c["rated_payload_kg"]).to_numpy(float)
    loading = (c["loaded_at"] - c["load_start"]).dt.total_seconds().to_numpy(float)
    return Distributions(
        payload=payload / np.median(payload), unweighed_share=0.0,
        loader_queue_s=wait_before("load_zone", "load_start"), loading_s=loading,
        loading_per_pass_s=loading / c["passes"].to_numpy(float),
        dumping_s=(c["dumped_at"] - c["dump_arrived_at"]).dt.total_seconds().to_numpy(float),
        dump_queue_s=wait_before("dump_zone", "dump_arrived_at"),
        loaded_pause_s=(c["haul_start"] - c["loaded_at"]).dt.total_seconds().to_numpy(float))


FIGURES = ("payload", "loader_queue_s", "loading_s", "loading_per_pass_s", "dumping_s", "dump_queue_s",
           "loaded_pause_s")


def table(real: Distributions, sim: Distributions) -> str:
    """Quantiles, mean and share of zeros of each figure, records against simulator."""
    head = " ".join(f"{'p' + str(round(100 * q)):>7}" for q in QUANTILES)
    lines = [f"{'figure':20} {'source':9} {head} {'mean':>7} {'zero %':>6} {'n':>6}"]
    for name in FIGURES:
        for label, d in (("records", real), ("simulated", sim)):
            x = getattr(d, name)
            fmt = "{:7.3f}" if name == "payload" else "{:7.0f}"
            cells = " ".join(fmt.format(v) for v in np.quantile(x, QUANTILES))
            lines.append(f"{name:20} {label:9} {cells} {fmt.format(x.mean())} {100 * (x == 0).mean():6.1f} "
                         f"{len(x):6d}")
    lines.append(f"unweighed (0 t) cycles: records {100 * real.unweighed_share:.1f} %, simulated "
                 f"{100 * sim.unweighed_share:.1f} % (a load-cell matter, not a load)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--behaviour", choices=list(BEHAVIOURS), default="recorded")
    parser.add_argument("--haulers", type=int, default=None)
    args = parser.parse_args(argv)
    print(table(recorded(), simulated(args.seeds, args.hours, args.behaviour, args.haulers)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
