"""CLI start-up: wall time of ``sitepulse --help`` and ``sitepulse services list``, medians of --repeat runs.

The baseline, measured in the same run, is what ``--help`` cost while the CLI imported every command's module
to build itself: the same help printed after loading every ``sitepulse.cli`` entry point (pandas, numba,
FastAPI, the services' cached kernels). ``services list`` loads every micro-service; after ``make install``
(which runs ``sitepulse warm``) their numba kernels come from the cache. ``--cold`` first deletes numba's
cache files under the source folders, to time the first ``services list`` of a fresh checkout without the
warm-up step (it then leaves the cache rebuilt).

    .venv/bin/python benchmarks/cli_startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EAGER_HELP = """
import sys
from importlib.metadata import entry_points
for entry in entry_points(group="sitepulse.cli"):
    entry.load()
sys.argv = ["sitepulse", "--help"]
from sitepulse.cli import app
app()
"""


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEPULSE_")}
    folder = Path(tempfile.mkdtemp(prefix="sitepulse-cli-bench-"))
    (folder / "none.toml").write_text("")
    env.update(SITEPULSE_DATA_DIR=str(folder / "data"), SITEPULSE_CONFIG_FILE=str(folder / "none.toml"))
    return env


def timed(command: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of one run (which must succeed)."""
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return elapsed


def median_of(command: list[str], env: dict[str, str], repeat: int) -> float:
    timed(command, env)  # a first run fills the OS file cache and the .pyc files
    return statistics.median(timed(command, env) for _ in range(repeat))


def drop_numba_cache() -> int:
    """Delete numba's cache files beside our sources; how many were deleted."""
    files = [p for pattern in ("*.nbi", "*.nbc") for p in ROOT.glob(f"*/**/__pycache__/{pattern}")
             if ".venv" not in p.parts]
    for path in files:
        path.unlink()
    return len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also time a services list with numba's cache deleted")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    sitepulse = str(bin_dir / "sitepulse")
    env = _environment()

    lazy = median_of([sitepulse, "--help"], env, args.repeat)
    eager = median_of([sys.executable, "-c", EAGER_HELP], env, args.repeat)
    services = median_of([sitepulse, "services", "list"], env, args.repeat)
    print(f"sitepulse --help            median {lazy:6.2f} s over {args.repeat} runs")
    print(f"  every command imported    median {eager:6.2f} s (the baseline: how --help was built before)")
    print(f"  ratio                     {eager / lazy:6.1f}x faster")
    print(f"sitepulse services list     median {services:6.2f} s (numba kernels from the cache)")
    if args.cold:
        dropped = drop_numba_cache()
        cold = timed([sitepulse, "services", "list"], env)
        print(f"services list, cold cache   {cold:6.2f} s ({dropped} cache files deleted first: what `make install`'s "
              "`sitepulse warm` spares the first run)")
        warm = timed([sitepulse, "warm"], env)
        print(f"sitepulse warm, warm cache  {warm:6.2f} s")


if __name__ == "__main__":
    main()
