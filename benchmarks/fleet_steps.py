"""Steps of a large fleet: rows/s of each built-in service in live (5 s) and catch-up (60 s) batches.

    .venv/bin/python benchmarks/fleet_steps.py [--machines 1000] [--seconds 60] [--chunks 5s 60s] [--repeat 3]

A runner that keeps up with a live site processes each service's new rows in small steps; one that fell
behind (after an outage) takes bigger ones. What matters is that a service's rows/s stays above the
fleet's rate (machines x 1 Hz) with room for the broker, the database and ingest on the same cores, and
does not drop as steps grow (a per-machine pass over the whole batch makes big steps slower per row, so a
service that falls behind falls further). The fleet: ``--machines`` haulers driving at
21.6 km/h with random turns over the demo quarry (so the machines are denser than on a real site, which
makes more close encounters for traffic-awareness to judge). Printed per service: median rows/s over
``--repeat`` runs and the headroom, rows/s divided by the fleet's rate (1.0 = just keeping up, on one core).

``--motion-cost`` also runs positioning, traffic-awareness and weight-loading with the reported heading and speed
taken as they come (the code before motion from the track, issue #18; weight loading then finds no cycles from
the track either), alternating with the fused motion in the same run (in turns, ABBA), and prints fused / raw
rows/s (the cost of fault handling; the bar is >= 0.9), per wall second and per CPU second of the benchmark's
process (on cores other sessions share, the CPU-second ratio is the steadier one). data-quality, the health
check, is a service of its own and is timed beside the others.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

# run as a script, this folder comes first on sys.path and its ingest.py would shadow the ingest package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import microservices.positioning.detect as positioning_detect  # noqa: E402
import microservices.traffic_awareness.detect as traffic_detect  # noqa: E402
import microservices.weight_loading.service as weight_service  # noqa: E402
from evaluation.pipeline import in_turns, run_in_chunks  # noqa: E402
from microservices.data_quality import DataQuality  # noqa: E402
from microservices.motion import Motion  # noqa: E402
from microservices.positioning import Positioning  # noqa: E402
from microservices.receiver import PRIOR_NOISE_M  # noqa: E402
from microservices.traffic_awareness import TrafficAwareness  # noqa: E402
from microservices.weight_loading import WeightLoading  # noqa: E402
from simulators.site import load_site  # noqa: E402


def fleet(machines: int, seconds: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Telemetry rows (ingest's columns) and the machine registry of ``machines`` haulers driving at random."""
    site = load_site(None)
    rng = np.random.default_rng(seed)
    angle, radius = rng.uniform(0, 2 * np.pi, machines), rng.uniform(0, 800, machines)
    x, y, heading = radius * np.cos(angle), radius * np.sin(angle), rng.uniform(0, 360, machines)
    ids = np.array([f"H{i:04d}" for i in range(machines)], dtype=object)
    start = pd.Timestamp("2026-03-02T06:00:00Z")
    frames = []
    for second in range(seconds):
        heading = (heading + rng.normal(0, 5, machines)) % 360
        x, y = x + 6.0 * np.sin(np.radians(heading)), y + 6.0 * np.cos(np.radians(heading))
        lon, lat = site.frame.to_lonlat(x, y)
        ts = start + pd.Timedelta(seconds=second)
        frames.append(pd.DataFrame({
            "site_id": "bench", "machine_id": ids, "ts": ts, "seq": -1, "received_at": ts, "lat": lat, "lon": lon,
            "speed_kmh": 21.6, "heading_deg": heading, "payload_kg": 0.0, "fuel_used_l": 0.01 * second,
            "engine_hours": 1.0, "engine_on": True}))
    registry = pd.DataFrame({"machine_id": ids, "kind": "hauler", "model": "bench", "rated_payload_kg": 90_000})
    return pd.concat(frames, ignore_index=True), registry


def _raw(speed_kmh: np.ndarray, heading_deg: np.ndarray) -> Motion:
    """Motion as reported, no track: what the services did before motion fusion."""
    speed, course = np.asarray(speed_kmh, float), np.asarray(heading_deg, float)
    rad, ms = np.radians(course), np.nan_to_num(speed) / 3.6
    vx, vy = np.nan_to_num(ms * np.sin(rad)), np.nan_to_num(ms * np.cos(rad))
    nan, no = np.full(len(speed), np.nan), np.zeros(len(speed), bool)
    return Motion(vx, vy, speed, course, nan, nan, nan, ~no, no, no, ~no, no, no, np.nan_to_num(speed) <= 0,
                  np.full(len(speed), PRIOR_NOISE_M))


def raw_motion_from_fixes(group, t, x, y, speed_kmh, heading_deg, settings=None, filtered=False, **carried
                          ) -> Motion:
    return _raw(speed_kmh, heading_deg)


def raw_fuse(track_vx, track_vy, speed_kmh, heading_deg, settings=None, key=None, ground=None) -> Motion:
    return _raw(speed_kmh, heading_deg)


def raw_fused_speed(arrays, haulers, frame, carried):
    return arrays["v"], carried


class NoTrackCycles(weight_service.WeightLoadingSettings):
    """Weight loading as before issue #18: no haul cycles from the track for a hauler whose payload is faulty."""

    track_cycles: bool = False


FUSED = {"traffic": traffic_detect.motion_from_fixes, "positioning": positioning_detect.fuse,
         "weight": weight_service.fused_speed, "weight_settings": weight_service.WeightLoading.Settings}


def use_motion(fused: bool) -> None:
    """Switch the services between fault handling and raw motion (benchmark only): positioning and
    traffic-awareness fuse motion or not; weight loading takes speed over ground and finds cycles from the
    track, or neither."""
    traffic_detect.motion_from_fixes = FUSED["traffic"] if fused else raw_motion_from_fixes
    positioning_detect.fuse = FUSED["positioning"] if fused else raw_fuse
    weight_service.fused_speed = FUSED["weight"] if fused else raw_fused_speed
    weight_service.WeightLoading.Settings = FUSED["weight_settings"] if fused else NoTrackCycles


def with_motion(fused: bool, service, telemetry, site, chunk, registry) -> tuple[float, float]:
    """``rows_per_s`` (wall and CPU) with fault handling on or off."""
    use_motion(fused)
    return rows_per_s(service, telemetry, site, chunk, registry, cpu=True)


def rows_per_s(service, telemetry, site, chunk, registry, cpu: bool = False) -> float | tuple[float, float]:
    """Rows per wall second; with ``cpu`` also rows per CPU second of this process (what other sessions on
    shared cores disturb least)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    run_in_chunks(service, telemetry, site=site, chunk=chunk, machines=registry)
    wall = len(telemetry) / (time.perf_counter() - started)
    return (wall, len(telemetry) / (time.process_time() - cpu_started)) if cpu else wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--chunks", nargs="+", default=["5s", "60s"], help="batch lengths: live, catching up")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--motion-cost", action="store_true", help="fused vs raw motion, alternating, same run")
    args = parser.parse_args()
    site = load_site(None)
    telemetry, registry = fleet(args.machines, args.seconds)
    rate = args.machines  # samples per second at 1 Hz
    print(f"{args.machines:,} machines x {args.seconds} s at 1 Hz = {len(telemetry):,} rows;"
          f" the fleet's rate is {rate:,} rows/s")
    for chunk in args.chunks:
        print(f"{chunk} batches:")
        for service in (Positioning(), TrafficAwareness(), WeightLoading(), DataQuality()):
            runs = [rows_per_s(service, telemetry, site, chunk, registry) for _ in range(args.repeat)]
            rows_s = statistics.median(runs)
            print(f"  {service.name:<18} {rows_s:>10,.0f} rows/s   headroom {rows_s / rate:5.1f}x"
                  f"   (runs {', '.join(f'{r:,.0f}' for r in runs)})", flush=True)
        if not args.motion_cost:
            continue
        for service in (Positioning(), TrafficAwareness(), WeightLoading()):
            fused, raw = in_turns(args.repeat, partial(with_motion, True, service, telemetry, site, chunk, registry),
                                  partial(with_motion, False, service, telemetry, site, chunk, registry))
            wall = statistics.median(f[0] for f in fused) / statistics.median(r[0] for r in raw)
            cpu = statistics.median(f[1] for f in fused) / statistics.median(r[1] for r in raw)
            print(f"  {service.name:<18} motion fused {statistics.median(f[0] for f in fused):>9,.0f} / raw "
                  f"{statistics.median(r[0] for r in raw):>9,.0f} rows/s = {wall:.2f}, per CPU second {cpu:.2f} "
                  f"(bar >= 0.90)", flush=True)

if __name__ == "__main__":
    main()
