"""Score the health check against the simulator's ground truth: every injected sensor fault found, how soon,
and no finding on a healthy machine.

    .venv/bin/python -m evaluation.data_quality --seeds 1 2 --minutes 20
    .venv/bin/python -m evaluation.data_quality --seeds 1 --white-m 2.5 --hz 10   # a standalone receiver, 10 Hz

Each run puts a different fault on each machine of the demo quarry (``--faults`` items with one machine each,
starting ``--start`` simulated seconds in); the rest stay healthy. Samples arrive ``latency`` seconds after
their true time (as they would on a live site), so clock faults show against arrival.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from evaluation.pipeline import machines_frame, run_in_chunks
from ingest.contract import ROW_COLUMNS, Decoded, Decoder
from microservices.data_quality.service import DataQuality
from microservices.data_quality.settings import DataQualitySettings
from simulators.engine import simulate
from simulators.faults import parse_faults
from simulators.sensors import FleetSensors, SensorConfig
from simulators.site import load_site
from sitepulse.sitefile import SiteConfig

SPIKE_KMH = 120.0  # a step faster than any site machine drives: a spike has shown
EXPECTED = {"stuck": "stuck", "absent": "absent", "noisy": "implausible", "offset": "offset",
            "implausible": "implausible", "skew": "skew", "drift": "skew"}
# one fault per machine; every mode the simulator has (simulators/sensor_faults.py)
FAULT_SETS = (
    ("heading=stuck0", "heading=absent", "heading=noisy30", "heading=offset180", "speed=stuck0",
     "speed=absent", "position=implausible", "payload=offset+2.5"),
    ("heading=stuck", "speed=noisy10", "speed=offset-5", "position=absent", "payload=stuck", "payload=absent",
     "fuel=stuck", "fuel=implausible"),
    ("hours=stuck", "hours=implausible", "clock=skew+30", "clock=drift+60", "fuel=absent", "hours=absent"),
)


@dataclass
class FaultResult:
    """One injected fault: found or not, how long after it started, with which status."""

    machine_id: str
    spec: str
    found: bool
    latency_s: float | None
    status: str | None
    shows_s: float = 0.0  # seconds after the start before the fault can show (machine moving, body empty)


@dataclass
class RunScore:
    faults: list[FaultResult] = field(default_factory=list)
    healthy_machines: int = 0
    false_findings: list[str] = field(default_factory=list)  # on healthy machines
    other_findings: list[str] = field(default_factory=list)  # other sensors of faulty machines
    rows: int = 0


def telemetry_arriving(sim, latency_s: float = 0.2) -> pd.DataFrame:
    """Rows as ingest stores them, each received ``latency_s`` after the simulated time it was sent."""
    decoder, out = Decoder(), Decoded()
    start = sim.start
    for message in sim:
        decoder.decode_into(out, message.topic, message.payload, start + timedelta(seconds=message.t + latency_s))
    frame = pd.DataFrame(out.rows, columns=list(ROW_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    frame = frame.drop_duplicates(["site_id", "machine_id", "ts", "seq"])
    return frame.sort_values(["site_id", "machine_id", "ts", "seq"], kind="stable").reset_index(drop=True)


def assign(machines: list[str], specs: tuple[str, ...], start_s: float) -> dict[str, str]:
    """Fault spec per machine: haulers first (every sensor fault shows on a hauler), one fault each."""
    return {m: f"{spec}:{m}@{start_s:g}" for m, spec in zip(machines, specs, strict=False)}


def shows_after(rows: pd.DataFrame, record: dict, site, rated: float,
                settings: DataQualitySettings | None = None) -> float:
    """Seconds from a fault's start until it can show: heading and speed once the machine drives (at least 12 km/h
    over 5 s of fixes), a stuck payload once it drives after it has been frozen for ``payload_frozen_s``
    (``payload_zero_frozen_s`` at exactly 0: repeats between neighbouring samples are normal), a payload offset
    once the body is empty, GNSS spikes at the first fix no machine could have driven to; others at once."""
    started = pd.Timestamp(record["started_at"])
    frozen_s = 0.0
    if (record["sensor"], record["mode"]) == ("payload", "stuck"):
        st = settings or DataQualitySettings()
        value = rows.loc[rows["ts"] >= started, "payload_kg"].head(1)
        frozen_s = st.payload_zero_frozen_s if len(value) and value.iloc[0] == 0 else st.payload_frozen_s
        started = started + pd.Timedelta(seconds=frozen_s)
    after = rows[rows["ts"] >= started]
    if after.empty:
        return 0.0
    if record["sensor"] in ("heading", "speed") or (record["sensor"], record["mode"]) == ("payload", "stuck"):
        x, y = site.frame.to_xy(after["lon"].to_numpy(float), after["lat"].to_numpy(float))
        t = after["ts"].astype("int64").to_numpy() / 1e9
        step = pd.Series(((x[5:] - x[:-5]) ** 2 + (y[5:] - y[:-5]) ** 2) ** 0.5 / (t[5:] - t[:-5]) * 3.6)
        moving = step.index[step >= 12.0]
        return frozen_s + (float(t[moving[0] + 5] - t[0]) if len(moving) else 0.0)
    if (record["sensor"], record["mode"]) == ("position", "implausible"):  # at the first spike
        x, y = site.frame.to_xy(after["lon"].to_numpy(float), after["lat"].to_numpy(float))
        t = after["ts"].astype("int64").to_numpy() / 1e9
        with np.errstate(invalid="ignore", divide="ignore"):
            step = np.hypot(np.diff(x), np.diff(y)) / np.diff(t) * 3.6
        spikes = np.flatnonzero(step > SPIKE_KMH)
        return float(t[spikes[0] + 1] - (started.value / 1e9)) if len(spikes) else 0.0
    if (record["sensor"], record["mode"]) == ("payload", "offset"):
        empty = after[after["payload_kg"] < 0.12 * rated + (record["value"] or 0) * 1000]
        return float((empty["ts"].iloc[0] - started).total_seconds()) if not empty.empty else 0.0
    return 0.0


def score_run(seed: int, specs: tuple[str, ...], minutes: float = 20.0, start_s: float = 300.0,
              chunk: str = "1min", settings: DataQualitySettings | None = None, *,
              sensors: FleetSensors | str | None = None, hz: float = 1.0,
              site: SiteConfig | str | None = None) -> RunScore:
    """Simulate one seed of ``site`` (default the demo quarry) with ``sensors`` (a SensorConfig, a MixedFleet or
    a receiver class name) and one fault per hauler, run the service in chunks, compare with the truth."""
    site = load_site(site)
    probe = simulate(site, site_id="demo", duration_s=0, seed=seed)
    faults = assign([m.id for m in probe.haulers], specs, start_s)
    sim = simulate(site, site_id="demo", hz=hz, duration_s=minutes * 60, seed=seed, sensors=sensors,
                   faults=parse_faults(",".join(faults.values())) if faults else None)
    telemetry = telemetry_arriving(sim)
    truth = sim.truth_records()
    machines = pd.DataFrame([[r["machine_id"], r["kind"], r["model"], r["rated_payload_kg"]] for r in truth
                             if r["type"] == "machine"], columns=machines_frame(None).columns)
    tables = run_in_chunks(DataQuality(), telemetry, site=site, settings=settings, chunk=chunk, machines=machines)
    events = tables.get("sensor_events", pd.DataFrame(columns=["machine_id", "sensor", "status", "since",
                                                                "detected_at", "evidence"]))
    return compare(events, truth, telemetry, site, settings)


def compare(events: pd.DataFrame, truth: list[dict], telemetry: pd.DataFrame, site,
            settings: DataQualitySettings | None = None) -> RunScore:
    """Each injected fault against the findings (same machine and sensor, the expected status, detected after
    the start), and the findings on machines without a fault."""
    bad = events[events["status"] != "ok"]
    machines = [r["machine_id"] for r in truth if r["type"] == "machine"]
    faulty_ids = {r["machine_id"] for r in truth if r["type"] == "sensor_fault"}
    score = RunScore(rows=len(telemetry), healthy_machines=len(set(machines) - faulty_ids))
    for record in (r for r in truth if r["type"] == "sensor_fault"):
        machine_id, sensor = record["machine_id"], record["sensor"]
        started = pd.Timestamp(record["started_at"])
        mine = bad[(bad["machine_id"] == machine_id) & (bad["sensor"] == sensor)
                   & (pd.to_datetime(bad["detected_at"], utc=True) >= started)]
        expected = EXPECTED[record["mode"]]
        hit = mine[mine["status"] == expected]
        first = hit.iloc[0] if not hit.empty else (mine.iloc[0] if not mine.empty else None)
        latency = (pd.Timestamp(first["detected_at"]) - started).total_seconds() if first is not None else None
        rated = next(r["rated_payload_kg"] for r in truth if r["type"] == "machine" and r["machine_id"] == machine_id)
        shows = shows_after(telemetry[telemetry["machine_id"] == machine_id], record, site, rated, settings)
        score.faults.append(FaultResult(machine_id, record["spec"], not hit.empty, latency,
                                        None if first is None else str(first["status"]), shows))
    faulty: dict[str, set[str]] = {}
    for r in truth:
        if r["type"] == "sensor_fault":
            faulty.setdefault(r["machine_id"], set()).add(r["sensor"])
    for row in bad.itertuples():
        line = f"{row.machine_id} {row.sensor} {row.status} since {row.since} ({row.evidence})"
        if row.machine_id not in faulty:
            score.false_findings.append(line)
        elif row.sensor not in faulty[row.machine_id]:
            score.other_findings.append(line)
    return score


def main(argv: list[str] | None = None) -> int:
    """Print each fault's result and the false findings; exit 1 when a fault is missed or a healthy machine
    gets a finding."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--start", type=float, default=300.0)
    parser.add_argument("--hz", type=float, default=1.0, help="sample rate")
    parser.add_argument("--white-m", type=float, default=None,
                        help="white GNSS noise per axis (m) on top of the default drift and jumps (2.5: standalone)")
    parser.add_argument("--healthy", action="store_true", help="no faults: only count findings (all false)")
    args = parser.parse_args(argv)
    # the simulator's jump rate is per sample: kept per second (as at 1 Hz) whatever the rate, or a 10-Hz receiver
    # would jump ten times as often
    sensors = SensorConfig(gnss_jump_rate=SensorConfig().gnss_jump_rate / args.hz,
                           **({"gnss_white_m": args.white_m} if args.white_m is not None else {}))
    ok = True
    for seed in args.seeds:
        for specs in ((),) if args.healthy else FAULT_SETS:
            s = score_run(seed, specs, args.minutes, args.start, hz=args.hz, sensors=sensors)
            for f in s.faults:
                ok &= f.found and f.latency_s is not None and f.latency_s - f.shows_s <= 120
                print(f"seed {seed} {f.spec:32} {'found' if f.found else 'MISSED':6} "
                      f"{'' if f.latency_s is None else f'{f.latency_s:5.0f} s':>7} "
                      f"(shows after {f.shows_s:3.0f} s) {f.status or ''}")
            for line in s.false_findings:
                ok = False
                print(f"seed {seed} FALSE on a healthy machine: {line}")
            for line in s.other_findings:
                print(f"seed {seed} also on a faulty machine: {line}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
