"""Benchmark the simulator's load mode against an embedded Mosquitto: achieved msg/s vs. target.

    .venv/bin/python benchmarks/simulate_load.py --machines 2000 --seconds 10
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from simulators.load import run_load
from sitepulse.embedded.broker import EmbeddedBroker


def main() -> None:
    """Start a broker, run load mode for a bounded time, print the rate achieved."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--machines", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = EmbeddedBroker(Path(tmp) / "mqtt")
        url = broker.start()
        try:
            r = run_load(machines=args.machines, hz=args.hz, duration_s=args.seconds, processes=args.processes,
                         mqtt_url=url)
        finally:
            broker.stop()
    ok = "OK" if r.rate >= 0.95 * r.target_rate else "BELOW TARGET"
    print(f"machines={r.machines} hz={r.hz:g} processes={r.processes} seconds={r.seconds:.1f} "
          f"sent={r.sent} acked={r.acked} max_lag={r.max_lag_s:.2f}s")
    print(f"achieved {r.rate:,.0f} msg/s vs target {r.target_rate:,.0f} msg/s: {ok}")


if __name__ == "__main__":
    main()
