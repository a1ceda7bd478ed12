"""``sitepulse run-services``: run the loaded micro-services in one runner process, or N sharing the work."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from microservices.alerts import MqttPublisher
from microservices.discovery import discover_services
from microservices.host_slots import host_cores
from microservices.runner import Runner
from microservices.sdk import Service
from sitepulse import heap, memtrace
from sitepulse.errors import SitePulseError
from sitepulse.logs import configured_settings
from sitepulse.runtime import Runtime, open_runtime
from sitepulse.supervisor import STOP_GRACE_S
from sitepulse.times import parse_user_time

console = Console(stderr=True)
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """Runner processes for ``serve``: one per core (each has its own GIL), at most ``MAX_DEFAULT_WORKERS``;
    the capacity model in docs/DEPLOYMENT.md is measured with these. Cores as the host slots count them, so no
    runner ``serve`` starts only stands by."""
    return max(1, min(MAX_DEFAULT_WORKERS, host_cores()))


# a catch-up step may take longer: it is abandoned (rolled back) before the supervisor's grace runs out
STOP_S = STOP_GRACE_S - 5.0


def run_services(
    only: Annotated[list[str] | None, typer.Option("--only", help="run just this service (repeatable)")] = None,
    since: Annotated[str | None, typer.Option("--from", help="recompute results from this time on")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, max=64, help="runner processes sharing the (service, site) pairs")] = 1,
    processes: Annotated[bool, typer.Option(help="run each service in its own process")] = False,
) -> None:
    """Run the enabled micro-services on new telemetry until stopped."""
    settings = configured_settings()
    start_from = parse_user_time(since, "--from") if since else None
    services = discover_services(settings.load_services)
    if only:
        missing = sorted(set(only) - set(services))
        if missing:
            raise SitePulseError(f"--only names services that are not loaded: {missing}")
        services = {name: s for name, s in services.items() if name in only}
    with open_runtime(settings, mqtt_user="services") as runtime:
        if workers > 1 or (processes and len(services) > 1):
            _supervise_runners(runtime, services, only or [], start_from, workers, processes)
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        heap.limit_arenas(2)  # before any thread allocates: service threads share freed memory (sitepulse/heap.py)
        memtrace.start_from_env("runner")
        publisher = MqttPublisher(runtime.mqtt_url, client_id="")
        runner = Runner(runtime.database_url, services, publisher, trace=settings.trace_services)
        runner.start(start_from)
        names = ", ".join(services) or "none installed"
        console.print(f"[green]started[/] micro-service runner {runner.runner_id}: {names}")
        # a timed wait: a process-directed signal may land on any thread, and then nothing wakes a main thread
        # blocked in an untimed wait to run the handler (a demo's Ctrl-C left one runner in 2 of 4 stops
        # waiting for the supervisor's SIGKILL)
        while not stop.wait(0.5):
            pass
        runner.stop(STOP_S)
        publisher.close()


def _supervise_runners(runtime: Runtime, services: dict[str, Service], only: list[str], since: datetime | None,
                       workers: int, per_service: bool) -> None:
    """``workers`` runner processes (per service with ``--processes``) under the kernel's supervisor. A rewind
    (``--from``) is done once, here, before they start: each pair under a lease, as a runner would."""
    from sitepulse.supervisor import Supervisor

    if since is not None:
        Runner(runtime.database_url, services).rewind(since)
    supervisor = Supervisor(runtime.child_environment("services"))
    supervisor.install_signal_handlers()
    groups = [[name] for name in services] if per_service else [only]
    for group in groups:
        for index in range(workers):
            label = f"services {','.join(group) or 'all'} #{index + 1}"
            supervisor.add(label, "run-services", *[arg for name in group for arg in ("--only", name)])
    console.print(f"[green]started[/] {len(supervisor.children)} runner process(es): {', '.join(services)}")
    supervisor.run()


def services_new(
    name: Annotated[str, typer.Argument(help="service name, lower-case words joined by '-'")],
    directory: Annotated[Path, typer.Option("--dir", help="where to create sitepulse-NAME/")] = Path("."),
    summary: Annotated[str, typer.Option(help="one line saying what the service does")] = "",
    author: Annotated[str, typer.Option(help="who builds or contributes it")] = "",
) -> None:
    """Write a working plugin package: a service folder shaped like the built-in ones, and its test."""
    from microservices.scaffold import new_service

    target = new_service(name, directory, summary, author)
    console.print(f"[green]created[/] {target}")
    console.print(f"next: cd {target} && pip install -e . && pytest tests && sitepulse services list")


def services_sample_config(
    name: Annotated[str, typer.Argument(help="an installed service, e.g. positioning")],
) -> None:
    """Print a service's per-site settings with their defaults and meanings (its sample.yaml)."""
    from microservices.sample_config import sample_config

    services = discover_services()
    if name not in services:
        raise SitePulseError(f"no installed service is called {name!r}; installed: {', '.join(sorted(services))}")
    typer.echo(sample_config(services[name].Settings()), nl=False)
