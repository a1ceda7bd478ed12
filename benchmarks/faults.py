"""Accuracy under sensor faults: a matrix of service x fault on seeded runs, and the health check's detection.

    .venv/bin/python benchmarks/faults.py --seeds 1 2 --hours 1

Each row injects one fault on EVERY machine for the whole run (``SENSOR=MODE:*``, simulators/sensor_faults.py) on
top of each score's own network faults, and scores each built-in service against the simulator's ground truth:
close encounters (traffic awareness, RTK positions, evaluation/traffic_awareness.py), haul cycles
(weight loading) and zone visits (positioning). A fault on a field a service does not read cannot change its
answers (services read only their declared ``consumes``): that cell repeats the fault-free figures, marked ``=``.
Issue #18's bars: encounters recall >= 0.95 and precision >= 0.9 under the heading faults; cycles and zone
visits within 0.02 of their fault-free recall and precision under every fault.

The second table is the health check (evaluation/data_quality.py): each run puts a different fault on
each hauler from 5 minutes in; every injected fault must be found within 2 minutes of the time it can show
(the machine drives, the body is empty) and no machine without a fault may get a finding.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# run as a script, this folder is first on sys.path and its ingest.py would shadow the ingest package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from evaluation import data_quality as health  # noqa: E402
from evaluation import positioning  # noqa: E402
from evaluation import traffic_awareness as traffic  # noqa: E402
from evaluation import weight_loading as weight  # noqa: E402
from simulators.faults import parse_faults  # noqa: E402

ROWS = ["none", "heading=stuck0:*", "heading=stuck:*", "heading=absent:*", "heading=noisy30:*",
        "heading=offset180:*", "speed=stuck0:*", "speed=absent:*", "speed=noisy10:*", "speed=offset-5:*",
        "position=implausible:*", "position=absent:*", "payload=offset+2.5:*", "payload=stuck:*",
        "payload=absent:*", "fuel=stuck:*", "fuel=implausible:*", "fuel=absent:*", "hours=stuck:*",
        "hours=implausible:*", "hours=absent:*", "clock=skew+30:*", "clock=drift+60:*"]
READS = {  # telemetry a service reads (its ``consumes``; every service reads the timestamps)
    "traffic": {"heading", "speed", "position", "clock"},
    "cycles": {"payload", "speed", "position", "fuel", "hours", "clock"},
    "visits": {"heading", "speed", "position", "clock"},
}


def _traffic(spec: str, seeds: list[int], hours: float) -> tuple[float, float]:
    clear = found = detected = spurious = 0
    for seed in seeds:
        s = traffic.score_run(seed, hours=hours, faults=traffic.FAULTS + ("" if spec == "none" else "," + spec),
                              profile="rtk")
        clear, found = clear + s.clear_encounters, found + s.found
        detected, spurious = detected + s.detected, spurious + s.spurious
    return (found / clear if clear else 1.0), (1 - spurious / detected if detected else 1.0)


def _cycles(spec: str, seeds: list[int], hours: float) -> tuple[float, float]:
    true = found = detected = paired = 0
    for seed in seeds:
        faults = parse_faults(weight.DEFAULT_FAULTS + ("" if spec == "none" else "," + spec))
        telemetry, records, site, machines = weight.simulated(seed, hours, faults=faults)
        s = weight.score_run(spec, telemetry, records, site, machines)
        true, found, detected, paired = true + s.true_cycles, found + s.matched, detected + s.detected, \
            paired + s.paired
    return (found / true if true else 1.0), (paired / detected if detected else 1.0)


def _visits(spec: str, seeds: list[int], hours: float) -> tuple[float, float]:
    true = found = detected = matched = 0
    for seed in seeds:
        s = positioning.score_run(seed, hours, faults=positioning.FAULTS + ("" if spec == "none" else "," + spec))
        true, found, detected, matched = true + s.true_visits, found + s.found, detected + s.detected_visits, \
            matched + s.matched_detected
    return (found / true if true else 1.0), (matched / detected if detected else 1.0)


SCORERS = {"traffic": _traffic, "cycles": _cycles, "visits": _visits}


def matrix(rows: list[str], seeds: list[int], hours: float, traffic_hours: float) -> bool:
    """Print service x fault (recall / precision); True when every bar of the issue holds."""
    ok = True
    print(f"{'fault (every machine)':24} {'encounters R/P':>15} {'cycles R/P':>15} {'zone visits R/P':>16} {'s':>5}")
    base: dict[str, tuple[float, float]] = {}
    for spec in rows:
        started = time.perf_counter()
        sensor = spec.partition("=")[0]
        cells = []
        for name, scorer in SCORERS.items():
            if spec != "none" and sensor not in READS[name]:
                recall, precision = base[name]
                cells.append(f"={recall:5.3f}/{precision:5.3f}")
                continue
            recall, precision = scorer(spec, seeds, traffic_hours if name == "traffic" else hours)
            if spec == "none":
                base[name] = (recall, precision)
            elif name == "traffic" and sensor == "heading":
                ok &= recall >= 0.95 and precision >= 0.9
            elif name in ("cycles", "visits"):
                ok &= recall >= base[name][0] - 0.02 and precision >= base[name][1] - 0.02
            cells.append(f"{recall:6.3f}/{precision:5.3f}")
        print(f"{spec:24} {cells[0]:>15} {cells[1]:>15} {cells[2]:>16} {time.perf_counter() - started:>5.0f}",
              flush=True)
    return ok


def detection(seeds: list[int], minutes: float) -> bool:
    """Print the health check's result per injected fault; True when all found in time and no false finding."""
    ok = True
    print(f"\n{'fault (one hauler)':32} {'seed':>4} {'found':>6} {'after start':>11} {'after it shows':>14}")
    false = 0
    for seed in seeds:
        for specs in health.FAULT_SETS:
            s = health.score_run(seed, specs, minutes, 300.0)
            for f in s.faults:
                late = None if f.latency_s is None else f.latency_s - f.shows_s
                ok &= f.found and late is not None and late <= 120
                print(f"{f.spec.split(':')[0]:32} {seed:>4} {'yes' if f.found else 'NO':>6} "
                      f"{'-' if f.latency_s is None else f'{f.latency_s:.0f} s':>11} "
                      f"{'-' if late is None else f'{late:.0f} s':>14}", flush=True)
            false += len(s.false_findings)
            for line in s.false_findings:
                print(f"  false finding on a healthy machine: {line}")
    print(f"false findings on healthy machines: {false}")
    return ok and false == 0


def main(argv: list[str] | None = None) -> int:
    """Print both tables; exit 1 when a bar is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours for cycles and zone visits")
    parser.add_argument("--traffic-hours", type=float, default=None, help="for encounters (default --hours)")
    parser.add_argument("--faults", nargs="+", default=ROWS)
    parser.add_argument("--minutes", type=float, default=15.0, help="simulated minutes per health-check run")
    parser.add_argument("--skip-matrix", action="store_true")
    args = parser.parse_args(argv)
    rows = args.faults if "none" in args.faults else ["none", *args.faults]
    ok = True
    if not args.skip_matrix:
        ok &= matrix(rows, args.seeds, args.hours, args.traffic_hours or args.hours)
    ok &= detection(args.seeds, args.minutes)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
