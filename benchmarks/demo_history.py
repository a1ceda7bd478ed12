"""How long ``sitepulse demo --history-days N`` takes to put its history through the pipeline.

Runs the real command (embedded PostgreSQL and Mosquitto in a temporary data directory, a free API port) until
it prints its ``history: ...`` line, reads the seconds from it, and stops the demo with SIGINT. The baseline,
measured in the same run: generating the same history (simulation + JSON arrays) with nothing downstream, so the
ratio says what the broker, ingest and the service runner add.

    .venv/bin/python benchmarks/demo_history.py                     # 28 days, once
    .venv/bin/python benchmarks/demo_history.py --days 14 --repeats 3

Prints medians; also the machine's load average, because on a shared machine the figure is only as steady as
the cores are free.
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off sys.path: its ingest.py would shadow the ingest package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time

from simulators.history import HistoryPlan, as_arrays, history_simulations
from simulators.site import load_site
from sitepulse.embedded.ports import free_port

LINE = re.compile(r"history: (\d+) days .* through the pipeline in (\d+) s")


def generate_only(days: int) -> float:
    """Seconds to simulate the same history and build its messages, nothing published."""
    started = time.perf_counter()
    for _, sim in history_simulations(load_site(), "demo", HistoryPlan(days=days, switch_day=days // 2)):
        for _ in as_arrays(sim.messages()):
            pass
    return time.perf_counter() - started


def demo_once(days: int, timeout_s: float) -> float:
    """Seconds the demo reports for its history (it counts from the first shift to the services caught up)."""
    with tempfile.TemporaryDirectory(prefix="sitepulse-demo-bench-") as data_dir:
        env = {**os.environ, "SITEPULSE_DATA_DIR": data_dir, "SITEPULSE_API_PORT": str(free_port()),
               "SITEPULSE_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
        env.pop("SITEPULSE_DATABASE_URL", None)
        env.pop("SITEPULSE_MQTT_URL", None)
        proc = subprocess.Popen([sys.executable, "-m", "sitepulse", "demo", "--history-days", str(days)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                found = LINE.search(line)
                if found:
                    return float(found[2])
                if time.monotonic() > deadline:
                    break
            raise SystemExit(f"the demo printed no history line in {timeout_s:.0f} s (exit {proc.poll()})")
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    base = [generate_only(args.days) for _ in range(args.repeats)]
    full = [demo_once(args.days, args.timeout) for _ in range(args.repeats)]
    load = os.getloadavg()
    print(f"history of {args.days} days (30-min shift a day at 0.5 Hz, 11 machines)")
    print(f"  generate only (baseline): median {statistics.median(base):.1f} s of {args.repeats}")
    print(f"  through the pipeline:     median {statistics.median(full):.0f} s of {args.repeats} "
          f"(ratio {statistics.median(full) / statistics.median(base):.1f}x the baseline; target <= 90 s)")
    print(f"  load average while measuring: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
