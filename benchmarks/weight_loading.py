"""Rows per second that weight-loading's process() handles on one core, in realistic batch sizes and as one batch.

    .venv/bin/python benchmarks/weight_loading.py --hours 1 --haulers 8

Telemetry comes from the simulator (faults on, decoded as ingest stores it). Each figure is the median of 5
runs, in CPU seconds of the benchmark's thread (the cores are shared: wall time swings by tens of per cent with
the neighbours, CPU time far less). ``--track-cost`` also times each batch size without cycles from the track,
``--fault-cost`` without any fault handling (neither speed over ground nor the track), in turns in the same run.
``--against CHECKOUT`` compares this checkout with another one (its own ``.venv``, e.g. a worktree of an older
commit) on the same telemetry: each version in its own process pinned to the same core, timed in turns (ABBA),
and prints ``now / before`` (throughput, the ratio of median CPU seconds) per batch size with the range of the
rounds' ratios:

    .venv/bin/python benchmarks/weight_loading.py --against ../wt-old --runs 9

The baseline, measured in the same run on the same frame, is one plain pandas pass (a per-machine rolling median
of payload plus a groupby aggregate), so the ratio says how many such passes the service costs. Target: >= 100k
rows/s.
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

# benchmarks/ingest.py would shadow the ingest package: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import pandas as pd

import microservices.weight_loading.service as weight_service
from evaluation.pipeline import in_turns
from evaluation.weight_loading import DEFAULT_FAULTS, simulated
from microservices.sdk import Batch
from microservices.weight_loading import WeightLoading
from microservices.weight_loading.settings import WeightLoadingSettings
from simulators.faults import parse_faults

TARGET_ROWS_PER_S = 100_000
BATCH_SIZES = (("batches of 10 s", "10s"), ("batches of 1 min", "1min"), ("batches of 10 min", "10min"),
               ("one batch", None))


def _pin_one_core() -> None:
    """Measure one core: pin the process and keep BLAS single-threaded."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def run_service(telemetry: pd.DataFrame, machines: pd.DataFrame, site, chunk: str | None,
                settings: WeightLoadingSettings | None = None) -> float:
    """Seconds process() takes over the telemetry fed in chunks of ``chunk`` (None = one batch)."""
    service, state = WeightLoading(), {}
    settings = settings or WeightLoading.Settings()
    groups = [telemetry] if chunk is None else [p for _, p in telemetry.groupby(telemetry["ts"].dt.floor(chunk))]
    parts = [p.sort_values(["machine_id", "ts", "seq"], kind="stable").reset_index(drop=True) for p in groups]
    elapsed = 0.0
    for part in parts:
        batch = Batch("bench", part, site, machines, lambda q, p=None: pd.DataFrame())
        started = time.thread_time()
        _, state = service.process(batch, state, settings)
        elapsed += time.thread_time() - started
    return elapsed


def run_unguarded(telemetry: pd.DataFrame, machines: pd.DataFrame, site, chunk: str | None) -> float:
    """``run_service`` without fault handling: the reported speed as it comes (no speed over ground) and no
    cycles from the track, as the service was before issue #18 (its fixes are still projected)."""
    fused = weight_service.fused_speed
    weight_service.fused_speed = lambda arrays, haulers, frame, carried: (arrays["v"], carried)
    try:
        return run_service(telemetry, machines, site, chunk, WeightLoadingSettings(track_cycles=False))
    finally:
        weight_service.fused_speed = fused


def run_baseline(telemetry: pd.DataFrame) -> float:
    """Seconds of one plain pandas pass over the same frame."""
    started = time.thread_time()
    indexed = telemetry.set_index("ts")
    indexed.groupby("machine_id")["payload_kg"].rolling("5s").median()
    telemetry.groupby("machine_id").agg(payload=("payload_kg", "median"), speed=("speed_kmh", "mean"),
                                        fuel=("fuel_used_l", "max"))
    return time.thread_time() - started


def serve(telemetry_path: str, machines_path: str) -> int:
    """Time ``run_service`` for each batch size read from stdin ("10s", "1min", "10min" or "all"), one CPU-seconds
    figure per line on stdout: the worker ``--against`` starts in each checkout (imports resolve to that checkout's
    code through its own interpreter, so only what both have is used here)."""
    from simulators.site import load_site

    _pin_one_core()
    telemetry, machines, site = pd.read_parquet(telemetry_path), pd.read_parquet(machines_path), load_site(None)
    for line in sys.stdin:
        chunk = None if line.strip() == "all" else line.strip()
        gc.collect()
        print(f"{run_service(telemetry, machines, site, chunk):.6f}", flush=True)
    return 0


class Worker:
    """One checkout's ``serve`` process: its interpreter (``.venv/bin/python``), this file, telemetry on disk."""

    def __init__(self, checkout: Path, telemetry_path: Path, machines_path: Path) -> None:
        python = checkout / ".venv" / "bin" / "python"
        if not python.exists():
            raise SystemExit(f"{checkout}: no .venv/bin/python (run make install there)")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen([str(python), str(Path(__file__).resolve()), "--serve", str(telemetry_path),
                                         str(machines_path)], cwd=checkout, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def time(self, chunk: str | None) -> float:
        """CPU seconds of one run over the telemetry in batches of ``chunk`` (None: one batch)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{chunk or 'all'}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit(f"the worker in {self.process.args[1]} stopped (exit {self.process.wait()})")
        return float(answer)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def against(reference: Path, telemetry: pd.DataFrame, machines: pd.DataFrame, runs: int) -> None:
    """Print now / before per batch size: this checkout against ``reference``, each in its own process on the same
    core and telemetry, in turns (ABBA; each run's figure is CPU seconds of the worker's thread)."""
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="wl-against-") as folder:
        telemetry_path, machines_path = Path(folder) / "telemetry.parquet", Path(folder) / "machines.parquet"
        telemetry.to_parquet(telemetry_path)
        machines.to_parquet(machines_path)
        now, before = Worker(here, telemetry_path, machines_path), Worker(reference, telemetry_path, machines_path)
        try:
            print(f"now: {here}, before: {reference.resolve()}; {runs} runs in turns per batch size")
            for label, chunk in BATCH_SIZES:
                now.time(chunk), before.time(chunk)  # warm: numba's cache, pandas' first calls
                seconds_now, seconds_before = in_turns(runs, partial(now.time, chunk), partial(before.time, chunk))
                ratio = statistics.median(seconds_before) / statistics.median(seconds_now)
                rounds = sorted(b / a for a, b in zip(seconds_now, seconds_before, strict=True))
                print(f"{label:<20} now / before = {ratio:.2f}  (rounds {rounds[0]:.2f}-{rounds[-1]:.2f}; CPU s "
                      f"{statistics.median(seconds_now):.3f} [{min(seconds_now):.3f}-{max(seconds_now):.3f}] / "
                      f"{statistics.median(seconds_before):.3f} [{min(seconds_before):.3f}-{max(seconds_before):.3f}])",
                      flush=True)
        finally:
            now.close()
            before.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours of telemetry")
    parser.add_argument("--haulers", type=int, default=None, help="haulers (default: the demo quarry's 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sensor-faults", default="", help="sensor faults added to the network ones, e.g. "
                        "'payload=stuck:*'")
    parser.add_argument("--track-cost", action="store_true", help="also time each batch size without cycles from "
                        "the track (alternating, same run): the cost of finding cycles when payload is faulty")
    parser.add_argument("--fault-cost", action="store_true", help="also time each batch size without any fault "
                        "handling (reported speed as it comes, no cycles from the track), alternating, same run")
    parser.add_argument("--against", type=Path, default=None, metavar="CHECKOUT",
                        help="compare with another checkout (its .venv) on the same telemetry: now / before per batch "
                        "size, each version in its own process, in turns")
    parser.add_argument("--serve", nargs=2, default=None, metavar=("TELEMETRY", "MACHINES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(*args.serve)
    _pin_one_core()
    faults = parse_faults(DEFAULT_FAULTS + ("," + args.sensor_faults if args.sensor_faults else ""))
    telemetry, _, site, machines = simulated(args.seed, args.hours, haulers=args.haulers, faults=faults)
    telemetry = telemetry.sort_values(["machine_id", "ts", "seq"], kind="stable").reset_index(drop=True)
    rows = len(telemetry)
    print(f"{rows:,} rows, {telemetry['machine_id'].nunique()} machines, {args.hours:g} h simulated")
    if args.against is not None:
        against(args.against, telemetry, machines, args.runs)
        return 0
    baseline = statistics.median(run_baseline(telemetry) for _ in range(args.runs))
    print(f"{'baseline (one pandas pass)':<32} {rows / baseline:>12,.0f} rows/s")
    ok = True
    for label, chunk in BATCH_SIZES:
        seconds = statistics.median(run_service(telemetry, machines, site, chunk) for _ in range(args.runs))
        rate = rows / seconds
        ok &= chunk in ("10s", "1min") or rate >= TARGET_ROWS_PER_S
        print(f"{'process(), ' + label:<32} {rate:>12,.0f} rows/s  ({seconds / baseline:5.1f}x the baseline time)")
        if args.track_cost:
            on, off = in_turns(args.runs, partial(run_service, telemetry, machines, site, chunk),
                                  partial(run_service, telemetry, machines, site, chunk,
                                          WeightLoadingSettings(track_cycles=False)))
            print(f"{'  with / without track cycles':<32} {statistics.median(off) / statistics.median(on):>12.2f}"
                  f"  (rows/s {rows / statistics.median(on):,.0f} / {rows / statistics.median(off):,.0f})")
        if args.fault_cost:
            on, off = in_turns(args.runs, partial(run_service, telemetry, machines, site, chunk),
                                  partial(run_unguarded, telemetry, machines, site, chunk))
            print(f"{'  with / without fault handling':<32} {statistics.median(off) / statistics.median(on):>12.2f}"
                  f"  (rows/s {rows / statistics.median(on):,.0f} / {rows / statistics.median(off):,.0f}; speed over "
                  f"ground and track cycles)")
    verdict = "MET" if ok else "MISSED"
    print(f"target >= {TARGET_ROWS_PER_S:,} rows/s for batches of 10 minutes or more (catch-up): {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
