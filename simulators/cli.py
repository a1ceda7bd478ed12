"""Command-line entry points of the simulator, as plain typer-annotated functions.

``sitepulse`` mounts them through the ``sitepulse.cli`` entry points: ``simulate``, ``replay``,
``simulate-load``. User errors raise SitePulseError (one line, exit code 2 at the top).
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from simulators.engine import Simulation, parse_start
from simulators.faults import parse_faults
from simulators.history import WITH_PAYLOAD_MANAGEMENT
from simulators.machines import BEHAVIOURS, Behaviour
from simulators.outputs import publish_live
from simulators.replay import replay_file
from simulators.sensors import LOAD_CELLS, RECEIVERS, FleetSensors, fleet_sensors
from simulators.site import load_site, shipped_sites
from sitepulse.errors import SitePulseError
from sitepulse.recording import write_messages

console = Console(stderr=True)
DEFAULT_MQTT = "mqtt://127.0.0.1:1883"
URL_HELP = "Broker URL (default $SITEPULSE_MQTT_URL)"


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def _summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    return table


def simulate(
    site: Annotated[Path | None, typer.Option("--site", help="Site file; default: the demo quarry")] = None,
    machines: Annotated[int | None, typer.Option("--machines", help="Haulers (loaders stay)")] = None,
    hz: Annotated[float, typer.Option("--hz", help="Samples per second per machine")] = 1.0,
    speedup: Annotated[float, typer.Option("--speedup", help="MQTT pace vs real time; 0 = max")] = 1.0,
    duration: Annotated[float, typer.Option("--duration", help="Simulated seconds")] = 3600.0,
    faults: Annotated[str | None, typer.Option(
        "--faults", help="e.g. dropout=0.01,duplicate=0.02,heading=stuck0:HX-03,payload=offset+2.5:HX-05@600")] = None,
    truth: Annotated[Path | None, typer.Option("--truth", help="Write ground truth JSON lines here")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Master random seed")] = 0,
    start: Annotated[str | None, typer.Option("--start", help="Simulated start, RFC 3339")] = None,
    mqtt_url: Annotated[str | None, typer.Option("--mqtt-url", help=URL_HELP)]
    = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write telemetry to FILE.jsonl or FILE.parquet")]
    = None,
    site_id: Annotated[str, typer.Option("--site-id", help="Site id used in MQTT topics")] = "demo",
    skew: Annotated[float, typer.Option("--skew", help="Max device clock skew, seconds")] = 0.5,
    payload_management: Annotated[bool, typer.Option(
        "--payload-management", help="load as with weight loading switched on (simulators/history.py)")] = False,
    receiver: Annotated[str | None, typer.Option(
        "--receiver", help="GNSS receiver class: rtk, sbas, standalone, or mixed (each machine draws one); "
        "default: the historical model (1.5 m drift, 0.3 m white)")] = None,
    gnss_white: Annotated[float | None, typer.Option(
        "--gnss-white", help="white GNSS noise per axis, metres (overrides the receiver class's)")] = None,
    load_cell: Annotated[str | None, typer.Option(
        "--load-cell", help="ideal (default) or real (100-kg steps, drift, sentinels, lag)")] = None,
    behaviour: Annotated[str | None, typer.Option(
        "--behaviour", help="operator habits: default, or recorded (calibrated against real fleet records)")]
    = None,
) -> None:
    """Simulate the quarry fleet: publish telemetry to MQTT and/or write it to a file, with ground truth."""
    site_cfg = load_site(site.name if site is not None and not site.exists() and site.name in shipped_sites()
                         else site)
    fault_cfg = parse_faults(faults)
    sensors = _sensors(receiver, gnss_white, load_cell)
    habits = _behaviour(behaviour, payload_management)
    if out is not None and out.suffix.lower() not in (".jsonl", ".json", ".ndjson", ".parquet"):
        raise SitePulseError(f"--out {out}: use a .jsonl or .parquet file name")
    url = mqtt_url or (None if out is not None else os.environ.get("SITEPULSE_MQTT_URL", DEFAULT_MQTT))
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", site_id):
        raise typer.BadParameter("1-64 characters of [A-Za-z0-9_.-]", param_hint="--site-id")
    # file output starts at a fixed time (reproducible); live publishing defaults to now
    start_dt = parse_start(start) if start is not None or out is not None else \
        datetime.now(UTC).replace(microsecond=0)
    sim = Simulation(site_cfg, site_id=site_id, haulers=machines, hz=hz, duration_s=duration, seed=seed,
                     start=start_dt, faults=fault_cfg, skew_max_s=skew, sensors=sensors, behaviour=habits)
    t0 = time.monotonic()
    with _progress() as progress:
        task = progress.add_task("simulating", total=max(1, sim.n_ticks))
        messages = sim.messages(progress=lambda k: progress.update(task, completed=k))
        if out is not None:
            n = write_messages(messages, out)
            where = str(out)
            if url is not None:
                progress.update(task, description=f"publishing to {url}")
                replay_file(out, url, speedup=speedup)
                where += f" and {url}"
        else:
            n = publish_live(messages, url, speedup=speedup).messages
            where = url
    wall = time.monotonic() - t0
    records = sim.write_truth(truth) if truth is not None else sim.truth_records()
    summary = next(r for r in records if r["type"] == "summary")
    faults_rec = {r["kind"]: r for r in records if r["type"] == "fault"}
    rows = [("site", f"{site_cfg.name or site_id} ({site_id})"), ("machines", str(len(sim.machines))),
            ("simulated", f"{sim.duration:.0f} s at {hz:g} Hz"),
            ("receivers", ", ".join(f"{k} {v}" for k, v in sorted(_receivers(sim).items()))),
            ("messages", f"{n:,} -> {where}"),
            ("wall time", f"{wall:.1f} s ({sim.duration / wall:,.0f}x real time)" if wall > 0 else "-"),
            ("haul cycles", str(summary["cycles"])), ("tonnes moved", f"{summary['tonnes_moved']:,}"),
            ("mean payload", f"{summary['mean_payload_pct']}% of rated"),
            ("bands", ", ".join(f"{k} {v}" for k, v in summary["bands"].items()))]
    for kind in ("encounter", "speeding", "restricted_entry", "queue", "zone_visit"):
        rows.append((kind.replace("_", " "), str(summary["records"].get(kind, 0))))
    rows.append(("faults", ", ".join(f"{k} {v['count']}" for k, v in faults_rec.items())))
    if truth is not None:
        rows.append(("ground truth", str(truth)))
    console.print(_summary_table("SitePulse simulation", rows))


def _sensors(receiver: str | None, gnss_white: float | None, load_cell: str | None) -> FleetSensors | None:
    """The fleet's sensors from the command line's names (None: the historical default model)."""
    if receiver is not None and receiver not in (*RECEIVERS, "mixed"):
        raise SitePulseError(f"--receiver {receiver!r}: use one of {', '.join((*RECEIVERS, 'mixed'))}")
    if load_cell is not None and load_cell not in LOAD_CELLS:
        raise SitePulseError(f"--load-cell {load_cell!r}: use one of {', '.join(LOAD_CELLS)}")
    if gnss_white is not None and not 0 <= gnss_white <= 20:
        raise SitePulseError("--gnss-white must be between 0 and 20 metres")
    if gnss_white is not None and receiver == "mixed":
        raise SitePulseError("--gnss-white does not apply to --receiver mixed (its standalone receivers draw "
                             "1-2.5 m each)")
    if receiver is None and gnss_white is None and load_cell is None:
        return None
    overrides = {"gnss_white_m": gnss_white} if gnss_white is not None else {}
    return fleet_sensors(receiver, load_cell, **overrides)


def _behaviour(name: str | None, payload_management: bool) -> Behaviour | None:
    if name is not None and name not in BEHAVIOURS:
        raise SitePulseError(f"--behaviour {name!r}: use one of {', '.join(BEHAVIOURS)}")
    if payload_management and name not in (None, "default"):
        raise SitePulseError("--payload-management sets its own loading habits; drop --behaviour or it")
    if payload_management:
        return WITH_PAYLOAD_MANAGEMENT
    return BEHAVIOURS[name] if name is not None else None


def _receivers(sim: Simulation) -> dict[str, int]:
    counts: dict[str, int] = {}
    for config in sim.machine_sensors:
        name = config.gnss_class or "default"
        counts[name] = counts.get(name, 0) + 1
    return counts


def replay(
    file: Annotated[Path, typer.Argument(help="Telemetry file written with --out (.jsonl or .parquet)")],
    mqtt_url: Annotated[str | None, typer.Option("--mqtt-url", help=URL_HELP)]
    = None,
    speedup: Annotated[float, typer.Option("--speedup", help="Pace vs recorded time; 0 = max")] = 0.0,
) -> None:
    """Publish a recorded telemetry file back to MQTT, byte for byte, in recorded order."""
    url = mqtt_url or os.environ.get("SITEPULSE_MQTT_URL", DEFAULT_MQTT)
    if not file.is_file():
        raise SitePulseError(f"{file}: no such telemetry file")
    with console.status(f"replaying {file} to {url}"):
        stats = replay_file(file, url, speedup=speedup)
    console.print(_summary_table("SitePulse replay", [
        ("file", str(file)), ("messages", f"{stats.messages:,}"), ("seconds", f"{stats.seconds:.1f}"),
        ("rate", f"{stats.rate:,.0f} msg/s")]))


def load(
    machines: Annotated[int, typer.Option("--machines", help="Simulated devices")] = 10_000,
    hz: Annotated[float, typer.Option("--hz", help="Samples per second per device")] = 1.0,
    duration: Annotated[float, typer.Option("--duration", help="Seconds to run")] = 60.0,
    processes: Annotated[int | None, typer.Option("--processes", help="Publisher processes")] = None,
    mqtt_url: Annotated[str | None, typer.Option("--mqtt-url", help=URL_HELP)]
    = None,
    site_id: Annotated[str, typer.Option("--site-id", help="Site id used in MQTT topics")] = "load",
) -> None:
    """Load mode for the ingest benchmarks: many devices at a fixed rate; reports the rate achieved."""
    from simulators.load import run_load

    url = mqtt_url or os.environ.get("SITEPULSE_MQTT_URL", DEFAULT_MQTT)
    with console.status(f"publishing {machines:,} machines x {hz:g} Hz for {duration:g} s to {url}"):
        r = run_load(machines=machines, hz=hz, duration_s=duration, processes=processes, mqtt_url=url,
                     site_id=site_id)
    console.print(_summary_table("SitePulse load", [
        ("machines", f"{r.machines:,}"), ("processes", str(r.processes)),
        ("target", f"{r.target_rate:,.0f} msg/s"), ("achieved", f"{r.rate:,.0f} msg/s (acknowledged)"),
        ("sent / acked", f"{r.sent:,} / {r.acked:,}"), ("seconds", f"{r.seconds:.1f}"),
        ("max lag", f"{r.max_lag_s:.2f} s")]))
