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

With ``--receivers`` a third table comes first: accuracy per GNSS receiver class and sample rate (issue 30)
for every service, on each ``--sites`` site (``copper_pit`` is kept apart from the demo quarry as a site the
services were not developed on):

    .venv/bin/python benchmarks/faults.py --receivers rtk sbas standalone --hz 0.5 1 2 10 --seeds 1 --hours 1 \
        --sites demo_quarry copper_pit --skip-matrix --out docs/figures/accuracy-by-receiver.txt

Its columns are ``RECEIVER_COLUMNS``: a service's evaluation adds a measure by adding a column there (a
header, the service's scorer, and a function of that scorer's results). ``--out`` writes every table printed,
under the exact command that made them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# run as a script, this folder is first on sys.path and its ingest.py would shadow the ingest package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from evaluation import data_quality as health  # noqa: E402
from evaluation import positioning  # noqa: E402
from evaluation import traffic_awareness as traffic  # noqa: E402
from evaluation import weight_loading as weight  # noqa: E402
from simulators.faults import parse_faults  # noqa: E402
from simulators.machines import BEHAVIOURS, Behaviour  # noqa: E402
from simulators.sensors import LOAD_CELLS, RECEIVERS, fleet_sensors  # noqa: E402
from simulators.truth import TruthSettings  # noqa: E402

OUT: list[str] = []  # every line printed, for --out


def say(line: str = "") -> None:
    """Print a line and keep it for --out."""
    print(line, flush=True)
    OUT.append(line)

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
    say(f"{'fault (every machine)':24} {'encounters R/P':>15} {'cycles R/P':>15} {'zone visits R/P':>16} {'s':>5}")
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
        say(f"{spec:24} {cells[0]:>15} {cells[1]:>15} {cells[2]:>16} {time.perf_counter() - started:>5.0f}")
    return ok


def detection(seeds: list[int], minutes: float) -> bool:
    """Print the health check's result per injected fault; True when all found in time and no false finding."""
    ok = True
    say(f"\n{'fault (one hauler)':32} {'seed':>4} {'found':>6} {'after start':>11} {'after it shows':>14}")
    false = 0
    for seed in seeds:
        for specs in health.FAULT_SETS:
            s = health.score_run(seed, specs, minutes, 300.0)
            for f in s.faults:
                late = None if f.latency_s is None else f.latency_s - f.shows_s
                ok &= f.found and late is not None and late <= 120
                say(f"{f.spec.split(':')[0]:32} {seed:>4} {'yes' if f.found else 'NO':>6} "
                    f"{'-' if f.latency_s is None else f'{f.latency_s:.0f} s':>11} "
                    f"{'-' if late is None else f'{late:.0f} s':>14}")
            false += len(s.false_findings)
            for line in s.false_findings:
                say(f"  false finding on a healthy machine: {line}")
    say(f"false findings on healthy machines: {false}")
    return ok and false == 0


# ---- accuracy per receiver class and sample rate ---------------------------------------------------------------
STANDING_MIN_S = 10.0  # truth: a machine stands when its true speed stays under 0.1 m/s this long


@dataclass(frozen=True)
class Fleet:
    """What one cell of the receiver table simulates."""

    receiver: str
    hz: float
    site: str
    load_cell: str | None
    behaviour: Behaviour | None

    @property
    def sensors(self) -> Any:
        return fleet_sensors(None if self.receiver == "default" else self.receiver, self.load_cell)


def _weight_runs(fleet: Fleet, seeds: list[int], hours: float) -> list[Any]:
    scores = []
    for seed in seeds:
        telemetry, records, site, machines = weight.simulated(
            seed, hours, hz=fleet.hz, faults=parse_faults(weight.DEFAULT_FAULTS), sensors=fleet.sensors,
            behaviour=fleet.behaviour, site=fleet.site)
        scores.append(weight.score_run(f"{fleet.receiver} {fleet.hz:g} Hz", telemetry, records, site, machines))
    return scores


def _visit_runs(fleet: Fleet, seeds: list[int], hours: float) -> list[Any]:
    return [positioning.score_run(seed, hours, hz=fleet.hz, sensors=fleet.sensors, site=fleet.site,
                                  behaviour=fleet.behaviour) for seed in seeds]


def _traffic_runs(fleet: Fleet, seeds: list[int], hours: float) -> list[Any]:
    behaviour = replace(fleet.behaviour, p_run_junction=traffic.RUN_JUNCTION) if fleet.behaviour else None
    return [traffic.score_run(seed, hours, sensors=fleet.sensors, hz=fleet.hz, site=fleet.site, behaviour=behaviour,
                              truth_settings=TruthSettings(standing_min_s=STANDING_MIN_S)) for seed in seeds]


RUNNERS: dict[str, Callable[[Fleet, list[int], float], list[Any]]] = {
    "weight": _weight_runs, "visits": _visit_runs, "traffic": _traffic_runs}


def _ratio(num: float, den: float) -> str:
    return f"{num / den:.3f}" if den else "-"


def _payload_errors(scores: list[Any]) -> pd.Series:
    pairs = pd.concat([s.pairs for s in scores], ignore_index=True)
    if pairs.empty:
        return pd.Series(dtype=float)
    return 100 * (pairs["det_payload_kg"] - pairs["true_payload_kg"]).abs() / pairs["true_rated_payload_kg"]


def _bands_right(scores: list[Any]) -> str:
    pairs = pd.concat([s.pairs for s in scores], ignore_index=True)
    return f"{100 * (pairs['det_band'] == pairs['true_band']).mean():.1f}" if len(pairs) else "-"


def standing_pair_events(truth: list[dict], encounters: pd.DataFrame) -> int:
    """Detected encounters whose closest moment falls while both machines truly stand (no such encounter is
    real: the truth's encounters need both moving)."""
    standing: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    for r in truth:
        if r["type"] == "standing":
            standing.setdefault(r["machine_id"], []).append((pd.Timestamp(r["from"]), pd.Timestamp(r["to"])))

    def stands(machine: str, at: pd.Timestamp) -> bool:
        return any(a <= at <= b for a, b in standing.get(machine, ()))

    if encounters.empty:
        return 0
    at = pd.to_datetime(encounters["at"], utc=True, format="ISO8601")
    return int(sum(stands(a, t) and stands(b, t)
                   for a, b, t in zip(encounters["machine_a"], encounters["machine_b"], at, strict=True)))


def _standing_pairs(scores: list[Any]) -> str:
    return str(sum(standing_pair_events(s.raw["truth"], s.raw["encounters"]) for s in scores))


def _queues(scores: list[Any]) -> str:
    true = sum(z["true_queues"] for s in scores for z in s.queue_zones.values())
    found = sum(z["queues"] for s in scores for z in s.queue_zones.values())
    return f"{found}/{true}"


@dataclass(frozen=True)
class Column:
    """One measure of the receiver table: its header, the scorer it reads, and how it reads that scorer's runs.
    A service's evaluation adds its measures here (e.g. ``getattr(s, "new_measure")`` of its RunScore)."""

    header: str
    runner: str
    measure: Callable[[list[Any]], str]
    width: int = 8


RECEIVER_COLUMNS: list[Column] = [
    Column("cyc R", "weight", lambda ss: _ratio(sum(s.matched for s in ss), sum(s.true_cycles for s in ss)), 6),
    Column("cyc P", "weight", lambda ss: _ratio(sum(s.paired for s in ss), sum(s.detected for s in ss)), 6),
    Column("pay err%", "weight", lambda ss: f"{e.median():.2f}" if len(e := _payload_errors(ss)) else "-"),
    Column("bands%", "weight", _bands_right, 6),
    Column("vis R", "visits", lambda ss: _ratio(sum(s.found for s in ss), sum(s.true_visits for s in ss)), 6),
    Column("vis P", "visits", lambda ss: _ratio(sum(s.matched_detected for s in ss),
                                                sum(s.detected_visits for s in ss)), 6),
    Column("enc R", "traffic", lambda ss: _ratio(sum(s.found for s in ss), sum(s.clear_encounters for s in ss)), 6),
    Column("enc P", "traffic", lambda ss: _ratio(sum(s.detected - s.spurious for s in ss),
                                                 sum(s.detected for s in ss)), 6),
    Column("enc det", "traffic", lambda ss: str(sum(s.detected for s in ss)), 7),
    Column("stand pairs", "traffic", _standing_pairs, 11),
    Column("queues", "traffic", _queues, 7),
    Column("q err%", "traffic", lambda ss: f"{max(s.queue_wait_error_pct for s in ss):.0f}", 6),
]


def receiver_table(receivers: list[str], rates: list[float], sites: list[str], seeds: list[int], hours: float,
                   traffic_hours: float, load_cell: str | None, behaviour: str | None) -> None:
    """Print every service's accuracy per site, receiver class and sample rate."""
    habits = BEHAVIOURS[behaviour] if behaviour else None
    say(f"seeds {' '.join(map(str, seeds))}, {hours:g} h per run ({traffic_hours:g} h for encounters and queues, "
        f"{traffic.HAULERS} haulers), network faults on, load cell {load_cell or 'ideal'}, behaviour "
        f"{behaviour or 'default'}")
    say("cyc R/P: haul cycles recall/precision; pay err%: median payload error, % of rated; bands%: payload band "
        "right; vis R/P: zone visits; enc R/P: close encounters (clear of / within the measurement band); enc det: "
        "encounters detected; stand pairs: encounters raised while both machines truly stand; queues: detected/true; "
        "q err%: worst zone's mean queue wait error")
    head = " ".join(f"{c.header:>{c.width}}" for c in RECEIVER_COLUMNS)
    say(f"{'site':12} {'receiver':10} {'Hz':>4} {head} {'s':>5}")
    for site in sites:
        for receiver in receivers:
            for hz in rates:
                started = time.perf_counter()
                fleet = Fleet(receiver, hz, site, load_cell, habits)
                runs = {name: run(fleet, seeds, traffic_hours if name == "traffic" else hours)
                        for name, run in RUNNERS.items()}
                cells = " ".join(f"{c.measure(runs[c.runner]):>{c.width}}" for c in RECEIVER_COLUMNS)
                say(f"{site:12} {receiver:10} {hz:>4g} {cells} {time.perf_counter() - started:>5.0f}")


def main(argv: list[str] | None = None) -> int:
    """Print both tables; exit 1 when a bar is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours for cycles and zone visits")
    parser.add_argument("--traffic-hours", type=float, default=None, help="for encounters (default --hours)")
    parser.add_argument("--faults", nargs="+", default=ROWS)
    parser.add_argument("--minutes", type=float, default=15.0, help="simulated minutes per health-check run")
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--receivers", nargs="+", choices=[*RECEIVERS, "mixed", "default"], default=[],
                        help="GNSS receiver classes of the receiver table (none: no receiver table)")
    parser.add_argument("--hz", nargs="+", type=float, default=[1.0], help="sample rates of the receiver table")
    parser.add_argument("--sites", nargs="+", default=["demo_quarry"], help="shipped sites or site files")
    parser.add_argument("--load-cell", choices=list(LOAD_CELLS), default=None)
    parser.add_argument("--behaviour", choices=list(BEHAVIOURS), default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here (e.g. docs/figures/)")
    args = parser.parse_args(argv)
    argv_text = sys.argv[1:] if argv is None else argv
    say(f"$ .venv/bin/python benchmarks/faults.py {shlex.join(argv_text)}")
    say(f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, numpy {np.__version__})")
    rows = args.faults if "none" in args.faults else ["none", *args.faults]
    ok = True
    traffic_hours = args.traffic_hours or args.hours
    if args.receivers:
        receiver_table(args.receivers, args.hz, args.sites, args.seeds, args.hours, traffic_hours, args.load_cell,
                       args.behaviour)
        say()
    if not args.skip_matrix:
        ok &= matrix(rows, args.seeds, args.hours, traffic_hours)
    if not args.skip_detection:
        ok &= detection(args.seeds, args.minutes)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(OUT) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
