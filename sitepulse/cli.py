"""The ``sitepulse`` command: one entry point for every role, each printing what it started and where.

User errors (bad settings, unreachable servers, bad files) print one red line and exit 2.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

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
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens scoped to sites.")
_app.add_typer(tokens_app, name="tokens")
site_app = typer.Typer(no_args_is_help=True, help="Sites: load a site file, suggest zones from telemetry.")
_app.add_typer(site_app, name="site")
needs_app = typer.Typer(no_args_is_help=True, help="The needs backlog of a site.")
_app.add_typer(needs_app, name="needs")


def _settings() -> Settings:
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    return settings


def _print_started(runtime: Runtime, extra: list[str] | None = None) -> None:
    for line in runtime.started + (extra or []):
        console.print(f"[green]started[/] {line}")
    if runtime.storage:
        colour = "yellow" if runtime.storage.startswith("plain PostgreSQL") else "green"
        console.print(f"[bold]storage[/] [{colour}]{runtime.storage}[/]", highlight=False, soft_wrap=True)


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

        from registry.api.app import create_app

        _print_started(runtime, [f"API on http://{settings.api_host}:{settings.api_port}"])
        uvicorn.run(
            create_app(runtime.database_url, runtime.mqtt_url),
            host=settings.api_host,
            port=settings.api_port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )


DEMO_SITE = "demo"
DEMO_HOURS = 8


def _prepare_demo(runtime: Runtime) -> str:
    """Load the demo quarry as site 'demo', switch every installed service on for it; return an admin token."""
    from microservices.discovery import discover_services
    from registry.enablement import set_enablement
    from simulators.site import load_site
    from sitepulse.db import connect
    from sitepulse.sites import save_site

    services = discover_services(runtime.settings.load_services)
    with connect(runtime.database_url, autocommit=True) as conn:
        save_site(conn, DEMO_SITE, load_site())
        for name in services:  # dependency order, so dependants find their dependencies on
            set_enablement(conn, services, DEMO_SITE, name, enabled=True)
    token = runtime.settings.admin_token
    return token.get_secret_value() if token else "demo-" + secrets.token_urlsafe(16)


def _serve(with_simulator: bool, history_days: int = 0) -> None:
    import threading

    from sitepulse.supervisor import Supervisor

    settings = _settings()
    _check_api_port(settings)
    with open_runtime(settings) as runtime:
        env = runtime.child_environment()
        token = _prepare_demo(runtime) if with_simulator else None
        if token:
            env["SITEPULSE_ADMIN_TOKEN"] = token
        supervisor = Supervisor(env)
        supervisor.install_signal_handlers()
        for role in ("ingest", "run-services", "api"):
            supervisor.add(role, role)
        if settings.decoders_file is not None:  # HTTP feeds of the decoders file (decoders/README.md)
            from decoders.feeds import load_feeds

            if load_feeds(settings):
                supervisor.add("feeds", "decoders", "feeds")
        live = ["simulate", "--site-id", DEMO_SITE, "--speedup", "1", "--duration", str(DEMO_HOURS * 3600)]
        if with_simulator and not history_days:
            supervisor.add("simulator", *live)
        base = f"http://{settings.api_host}:{settings.api_port}"
        _print_started(runtime, [f"API on {base} (docs {base}/docs)"])
        if with_simulator and history_days:
            from sitepulse.demo import backfill_history

            watcher = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
            watcher.start()
            if backfill_history(runtime.database_url, runtime.mqtt_url, DEMO_SITE, history_days,
                                supervisor.stopping, console):
                supervisor.launch("simulator", *live, "--payload-management")
        if with_simulator:
            console.print(f"[bold]SitePulse demo[/]: site '{DEMO_SITE}' (simulated quarry) publishing to "
                          f"{runtime.mqtt_url}\n  dashboard  {base}/\n  site view  {base}/api/v1/sites/"
                          f"{DEMO_SITE}/view\n  API docs   {base}/docs\n  admin token {token}")
        console.print("press Ctrl-C to stop")
        if with_simulator and history_days:
            while watcher.is_alive():
                watcher.join(0.5)
        else:
            supervisor.run()
    console.print("stopped")


@_app.command()
def serve() -> None:
    """Run broker, database, ingest, the service runner and the API in one process tree."""
    _serve(with_simulator=False)


@_app.command()
def demo(
    history_days: Annotated[int, typer.Option(
        "--history-days", min=0, max=90, help="days of history to run through the pipeline first (0: none)")] = 28,
) -> None:
    """``serve`` plus the simulated quarry fleet, after weeks of history; prints the dashboard URL."""
    _serve(with_simulator=True, history_days=history_days)


def _mount_package_commands() -> None:
    """Commands owned by the other packages (the CLI is the composition root)."""
    from ingest.cli import ingest
    from microservices.cli import run_services, services_new
    from microservices.positioning.cli import suggest_zones
    from registry import cli as registry_cli
    from simulators import cli as simulator_cli
    from sitepulse.status import status

    _app.command("ingest")(ingest)
    _app.command("run-services")(run_services)
    _app.command("status")(status)
    _app.command("simulate")(simulator_cli.simulate)
    _app.command("replay")(simulator_cli.replay)
    _app.command("simulate-load")(simulator_cli.load)
    services_app.command("list")(registry_cli.services_list)
    services_app.command("new")(services_new)
    tokens_app.command("create")(registry_cli.tokens_create)
    tokens_app.command("list")(registry_cli.tokens_list)
    tokens_app.command("revoke")(registry_cli.tokens_revoke)
    site_app.command("load")(registry_cli.site_load)
    site_app.command("suggest-zones")(suggest_zones)
    services_app.command("stage")(registry_cli.services_stage)
    needs_app.command("list")(registry_cli.needs_list)
    needs_app.command("add")(registry_cli.needs_add)
    _app.command("evaluate")(registry_cli.evaluate)
    _app.command("usage")(registry_cli.usage)
    from decoders.cli import decoders_app

    _app.add_typer(decoders_app, name="decoders")


_mount_package_commands()


def app() -> None:
    """Console-script entry point: run the CLI, turning user errors into one line."""
    try:
        _app()
    except SitePulseError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
