"""``sitepulse services trial``: try a service on a site's recorded history, with a progress bar."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from microservices.discovery import discover_services
from microservices.trial import with_dependencies
from registry.trials import create_trial, execute_trial
from sitepulse.db import connect
from sitepulse.errors import SitePulseError
from sitepulse.runtime import open_runtime
from sitepulse.settings import get_settings
from sitepulse.sites import check_site_id, site_exists
from sitepulse.times import parse_user_time

err = Console(stderr=True)


def services_trial(
    name: Annotated[str, typer.Argument(help="service name, e.g. weight-loading")],
    site: Annotated[str, typer.Option("--site", "-s", help="site id")],
    start: Annotated[str, typer.Option("--from", help="start of the period: 2026-05-01 (UTC) or RFC 3339")],
    end: Annotated[str, typer.Option("--to", help="end of the period, exclusive")],
) -> None:
    """Run a service over a site's recorded history as a trial: results apart from live ones, no alerts raised."""
    begin, until = parse_user_time(start, "--from"), parse_user_time(end, "--to")
    services = discover_services(get_settings().load_services)
    if name not in services:
        raise SitePulseError(f"service {name!r} is not installed; installed: {', '.join(sorted(services))}")
    steps = len(with_dependencies(services, name))
    with open_runtime(get_settings(), broker=False) as runtime, \
            connect(runtime.database_url, autocommit=True) as conn:
        if not site_exists(conn, check_site_id(site)):
            raise SitePulseError(f"site {site!r} not found")
        with conn.transaction():
            trial_id = create_trial(conn, services, site, name, begin, until, "cli")
        span = (until - begin).total_seconds() * steps
        done: dict[str, float] = {}
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f} %"),
                      TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task(f"trial {trial_id}: {name} on {site}", total=span)

            def progress(service: str, at: datetime) -> None:
                done[service] = (at - begin).total_seconds()
                bar.update(task, completed=sum(done.values()), description=f"trial {trial_id}: {service}")

            trial = execute_trial(conn, services, trial_id, progress)
    _print(trial)


def _print(trial: dict) -> None:
    err.print(f"[green]trial {trial['id']}[/] of {escape(trial['service'])} on {escape(trial['site_id'])}: "
              f"{trial['samples']} samples", highlight=False)
    found = Table("table", "rows", title="what it found")
    for table, rows in sorted(trial["found"].items()):
        found.add_row(table, str(rows))
    err.print(found)
    if trial["alerts"]:
        err.print("alerts it would have raised: " + ", ".join(f"{n} {level}" for level, n in
                                                            sorted(trial["alerts"].items())), highlight=False)
    kpis = Table("KPI", "unit", "trial", "site had", title="KPIs over the period (daily mean)")
    for kpi in trial["kpis"]:
        kpis.add_row(kpi["name"], kpi["unit"], _number(kpi["trial_mean"]), _number(kpi["site_mean"]))
    err.print(kpis)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
