"""``sitepulse serve`` and ``sitepulse demo``: every role as a supervised child process, plus the demo quarry."""

from __future__ import annotations

import secrets
import threading
from typing import Annotated, Any

import typer
from rich.console import Console

from microservices.cli import default_workers
from sitepulse.logs import configured_settings
from sitepulse.runtime import Runtime, check_api_port, open_runtime
from sitepulse.supervisor import Supervisor

console = Console(stderr=True)

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
        schedule_shift_report(conn)
    token = runtime.settings.admin_token
    return token.get_secret_value() if token else "demo-" + secrets.token_urlsafe(16)


def schedule_shift_report(conn: Any) -> None:
    """The demo site manager's shift report, e-mailed at each shift's end (once: a demo run again keeps it)."""
    from registry.shift_reports.schedules import ScheduleIn, create_schedule, site_schedules
    from stack.mailbox import DEMO_MANAGER

    if not site_schedules(conn, DEMO_SITE):
        create_schedule(conn, DEMO_SITE, ScheduleIn(name="Shift report to the site manager", trigger="shift_end",
                                                    formats=["pdf", "xlsx"], emails=[DEMO_MANAGER]), "demo")


def _fleet_login(runtime: Runtime, site: str) -> str:
    """How a site's devices log in to the embedded broker (nothing to add for a configured one)."""
    if not runtime.broker:
        return ""
    return f" as user device-{site}, password from `sitepulse site credentials {site}`"


def _serve(with_simulator: bool, history_days: int = 0) -> None:
    settings = configured_settings()
    check_api_port(settings)
    with open_runtime(settings) as runtime:
        env = runtime.child_environment()
        token = _prepare_demo(runtime) if with_simulator else None
        if token:
            env["SITEPULSE_ADMIN_TOKEN"] = token
        mailbox = _open_demo_mailbox(settings) if with_simulator else None
        supervisor = Supervisor(env)
        supervisor.install_signal_handlers()
        for role, mqtt_user in (("ingest", "ingest"), ("api", "api")):
            mail = mailbox.environment() if mailbox and role == "api" else {}
            supervisor.add(role, role, env={**runtime.child_environment(mqtt_user), **mail})
        for index in range(default_workers()):  # runner processes share the (service, site) pairs
            supervisor.add(f"run-services #{index + 1}", "run-services", env=runtime.child_environment("services"))
        if settings.decoders_file is not None:  # HTTP feeds of the decoders file (decoders/README.md)
            from decoders.feeds import load_feeds

            if load_feeds(settings):
                supervisor.add("feeds", "decoders", "feeds")
        live = ["simulate", "--site-id", DEMO_SITE, "--speedup", "1", "--duration", str(DEMO_HOURS * 3600)]
        fleet = {**env, "SITEPULSE_MQTT_URL": runtime.device_url(DEMO_SITE)} if with_simulator else env
        if with_simulator and not history_days:
            supervisor.add("simulator", *live, env=fleet)
        base = f"http://{settings.api_host}:{settings.api_port}"
        runtime.announce(console, [f"API on {base} (docs {base}/docs)"])
        if with_simulator and history_days:
            from stack.demo import backfill_history

            watcher = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
            watcher.start()
            if backfill_history(runtime.database_url, fleet["SITEPULSE_MQTT_URL"], DEMO_SITE, history_days,
                                supervisor.stopping, console):
                supervisor.launch("simulator", *live, "--payload-management", env=fleet)
        if with_simulator:
            console.print(f"[bold]SitePulse demo[/]: site '{DEMO_SITE}' (simulated quarry) publishing to "
                          f"{runtime.mqtt_url}{_fleet_login(runtime, DEMO_SITE)}\n  dashboard  {base}/\n  site view  "
                          f"{base}/api/v1/sites/{DEMO_SITE}/view\n  API docs   {base}/docs\n  admin token {token}")
            if mailbox:
                console.print(f"  mailbox    {mailbox.folder} (Maildir: the shift report e-mailed to the site "
                              "manager at each shift's end, 06:00 and 18:00 Europe/Stockholm)", highlight=False)
        elif runtime.broker:
            console.print(f"devices connect to {runtime.mqtt_url}{_fleet_login(runtime, 'SITE')}")
        console.print("press Ctrl-C to stop")
        if with_simulator and history_days:
            while watcher.is_alive():
                watcher.join(0.5)
        else:
            supervisor.run()
        if mailbox:
            mailbox.close()
    console.print("stopped")


def _open_demo_mailbox(settings: Any) -> Any:
    """The demo's loopback mailbox, unless reports go to a configured SMTP server."""
    if settings.smtp_host:
        return None
    from stack.mailbox import open_mailbox

    return open_mailbox(settings.data_dir / "mailbox")


def serve() -> None:
    """Run broker, database, ingest, the service runner and the API in one process tree."""
    _serve(with_simulator=False)


def demo(
    history_days: Annotated[int, typer.Option(
        "--history-days", min=0, max=90, help="days of history to run through the pipeline first (0: none)")] = 28,
) -> None:
    """``serve`` plus the simulated quarry fleet, after weeks of history; prints the dashboard URL."""
    _serve(with_simulator=True, history_days=history_days)
