"""The ``sitepulse`` command: one entry point for every role, each printing what it started and where.

User errors (bad settings, unreachable servers, bad files) print one red line and exit 2.
"""

from __future__ import annotations

import logging
import signal
import threading

import typer
from rich.console import Console
from rich.table import Table

from sitepulse.embedded.ports import port_in_use
from sitepulse.errors import ConfigError, SitePulseError
from sitepulse.logs import setup_logging
from sitepulse.runtime import Runtime, open_runtime
from sitepulse.settings import Settings, config_file_path, get_settings

console = Console(stderr=True)
log = logging.getLogger("sitepulse")

_app = typer.Typer(
    name="sitepulse",
    no_args_is_help=True,
    add_completion=False,
    help="SitePulse: fleet telemetry into small, evaluated micro-services.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
_app.add_typer(db_app, name="db")
services_app = typer.Typer(no_args_is_help=True, help="Micro-services: list installed, scaffold a new one.")
_app.add_typer(services_app, name="services")


def _settings() -> Settings:
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    return settings


def _print_started(runtime: Runtime, extra: list[str] | None = None) -> None:
    for line in runtime.started + (extra or []):
        console.print(f"[green]started[/] {line}")


def _wait_for_stop() -> None:
    """Block until SIGINT/SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


@_app.command()
def config() -> None:
    """Print the effective settings, secrets masked."""
    settings = get_settings()
    table = Table(title="SitePulse settings", show_lines=False)
    table.add_column("setting")
    table.add_column("value")
    for name, value in settings.masked().items():
        table.add_row(f"SITEPULSE_{name.upper()}", value or "[dim](unset)[/]")
    Console().print(table)
    path = config_file_path()
    Console().print(f"config file: {path if path and path.exists() else '(none)'}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration of every installed package and service."""
    settings = _settings()
    with open_runtime(settings, broker=False, migrate=False) as runtime:
        from sitepulse.db import connect
        from sitepulse.migrations import upgrade

        with connect(runtime.database_url, autocommit=True) as conn:
            applied = upgrade(conn)
        console.print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {a}" for a in applied))


def _check_api_port(settings: Settings) -> None:
    if settings.api_port and port_in_use(settings.api_host, settings.api_port):
        raise ConfigError(
            "SITEPULSE_API_PORT", f"port {settings.api_port} on {settings.api_host} is already in use"
        )


@_app.command()
def api() -> None:
    """Run the HTTP API (uses the configured or embedded database and broker)."""
    settings = _settings()
    _check_api_port(settings)
    with open_runtime(settings) as runtime:
        import uvicorn

        from registry.app import create_app

        _print_started(runtime, [f"API on http://{settings.api_host}:{settings.api_port}"])
        uvicorn.run(
            create_app(runtime.database_url, runtime.mqtt_url),
            host=settings.api_host,
            port=settings.api_port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )


def _serve(with_simulator: bool) -> None:
    from sitepulse.supervisor import Supervisor

    settings = _settings()
    _check_api_port(settings)
    with open_runtime(settings) as runtime:
        supervisor = Supervisor(runtime.child_environment())
        supervisor.install_signal_handlers()
        for role in _roles():
            supervisor.add(role, role)
        supervisor.add("api", "api")
        base = f"http://{settings.api_host}:{settings.api_port}"
        if with_simulator:
            supervisor.add("simulator", *_demo_simulator_args(), restart=True)
        _print_started(runtime, [f"API on {base} (docs {base}/docs)"])
        if with_simulator:
            console.print(
                f"[bold]SitePulse demo:[/] dashboard {base}/  API {base}/docs  broker {runtime.mqtt_url}"
            )
        console.print("press Ctrl-C to stop")
        supervisor.run()
    console.print("stopped")


def _roles() -> list[str]:
    """Background roles that exist in this installation, in start order."""
    return [name for name in ("ingest", "run-services") if name in _registered_commands()]


def _registered_commands() -> set[str]:
    return {c.name or (c.callback.__name__ if c.callback else "") for c in _app.registered_commands}


def _demo_simulator_args() -> list[str]:
    return ["simulate", "--speedup", "1", "--duration", "0"]


@_app.command()
def serve() -> None:
    """Run broker, database, ingest, the service runner and the API in one process tree."""
    _serve(with_simulator=False)


@_app.command()
def demo() -> None:
    """``serve`` plus the simulated quarry fleet; prints the dashboard URL."""
    _serve(with_simulator=True)


def _mount_optional() -> None:
    """Commands owned by the other packages, mounted where those packages provide them."""
    try:
        from ingest.cli import ingest
    except ImportError:
        pass
    else:
        _app.command("ingest")(ingest)
    from microservices.cli import run_services, services_new

    _app.command("run-services")(run_services)
    services_app.command("new")(services_new)
    try:
        from simulators import cli as sim
    except ImportError:
        pass
    else:
        for name in ("simulate", "replay", "load"):
            if hasattr(sim, name):
                _app.command(name if name != "load" else "simulate-load")(getattr(sim, name))


_mount_optional()


def app() -> None:
    """Console-script entry point: run the CLI, turning user errors into one line."""
    try:
        _app()
    except SitePulseError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
