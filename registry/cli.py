"""The registry's ``sitepulse`` commands: tokens, site loading, the service list, lifecycle, needs,
evaluation and usage (plain typer functions, contributed through the ``sitepulse.cli`` entry points in
pyproject.toml).

Errors a user can cause raise SitePulseError, which ``sitepulse`` prints as one line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import psycopg
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from microservices.discovery import discover_services
from registry.enablement import set_enablement
from registry.evaluation import Rules, evaluation_body, evaluation_csv
from registry.evaluation import evaluate as run_evaluation
from registry.lifecycle import NEXT_STAGES, STAGES
from registry.needs import add_need, list_needs
from registry.reports import by_customer, usage_csv, usage_report
from registry.sharing import check_usable_on_site
from registry.spreadsheet import inert
from registry.tokens import create_token, list_tokens, revoke_token
from sitepulse.db import connect
from sitepulse.errors import SitePulseError
from sitepulse.runtime import open_runtime
from sitepulse.settings import get_settings
from sitepulse.sitefile import load_site_file
from sitepulse.sites import check_site_id, save_site, site_exists
from sitepulse.times import parse_user_time

out = Console()
err = Console(stderr=True)  # messages; stdout carries only what a script captures


@contextmanager
def _database() -> Iterator[psycopg.Connection]:
    """The configured database (or embedded PostgreSQL), migrated, in one transaction."""
    with open_runtime(get_settings(), broker=False) as runtime, connect(runtime.database_url) as conn:
        yield conn


def tokens_create(
    site: Annotated[list[str] | None, typer.Option("--site", "-s", help="a site it may see (repeat)")] = None,
    name: Annotated[str, typer.Option(help="who or what uses the token")] = "cli",
    admin: Annotated[bool, typer.Option("--admin", help="an admin token (every site, admin routes)")] = False,
) -> None:
    """Create an API token and print it once; only its hash is stored."""
    with _database() as conn:
        issued = create_token(conn, name, site or [], "admin" if admin else "site")
    scope = "every site (admin)" if admin else ", ".join(issued.sites)
    err.print(f"[green]created[/] token {issued.id} {issued.name!r} for {scope}; "
              "it is shown only now, store it safely:", highlight=False)
    typer.echo(issued.token)


def tokens_list() -> None:
    """List API tokens (never their values)."""
    with _database() as conn:
        rows = list_tokens(conn)
    table = Table(title="API tokens")
    for column in ("id", "name", "role", "sites", "created", "last used", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["id"]), row["name"], row["role"], ", ".join(row["sites"]) or "(all)",
                      f"{row['created_at']:%Y-%m-%d %H:%M}",
                      f"{row['last_used_at']:%Y-%m-%d %H:%M}" if row["last_used_at"] else "-",
                      f"{row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "-")
    out.print(table)


def tokens_revoke(token_id: Annotated[int, typer.Argument(help="id from `tokens list`")]) -> None:
    """Revoke an API token; it stops working at once."""
    with _database() as conn:
        if not revoke_token(conn, token_id):
            raise SitePulseError(f"no live token with id {token_id}")
    err.print(f"[green]revoked[/] token {token_id}")


def site_load(
    file: Annotated[Path, typer.Argument(help="site file, YAML or GeoJSON")],
    site_id: Annotated[str | None, typer.Option("--site", help="site id; default: the file name")] = None,
) -> None:
    """Create or replace a site from its site file."""
    site_id = check_site_id(site_id or file.name.split(".")[0])
    site = load_site_file(file)
    with _database() as conn:
        created = save_site(conn, site_id, site, by="command line (sites load)")
    err.print(f"[green]{'created' if created else 'replaced'}[/] site {site_id!r} ({site.name}): "
              f"{len(site.zones)} zones, {len(site.machines)} machines", highlight=False)
    for warning in site.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def services_list() -> None:
    """List installed micro-services: what each reads and writes (no database needed)."""
    services = discover_services(get_settings().load_services)
    table = Table(title="Installed micro-services")
    for column in ("name", "version", "depends on", "tables", "fields read", "summary"):
        table.add_column(column)
    for service in services.values():
        table.add_row(service.name, service.version, ", ".join(service.depends_on) or "-",
                      "\n".join(service.tables) or "-", ", ".join(service.consumes) or "-", service.summary)
    out.print(table)
    if not services:
        err.print("no micro-services installed (entry-point group sitepulse.microservices)")


# --- lifecycle, needs, evaluation, usage ------------------------------------------------------

CLI_USER = "cli"


class OutputFormat(StrEnum):
    """How a report is printed: a table for people, JSON or CSV for scripts and spreadsheets."""

    table = "table"
    json = "json"
    csv = "csv"


def _print_json(body: Any) -> None:
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode()
                     + "\n")


def services_stage(
    name: Annotated[str, typer.Argument(help="service name")],
    stage: Annotated[str, typer.Argument(help=f"one of {', '.join(STAGES)}")],
    site: Annotated[str, typer.Option("--site", "-s", help="site id")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why, in plain words (kept in the history)")],
) -> None:
    """Move a service along its lifecycle on a site (proposed, prioritized, developing, pilot, live, retired)."""
    if len(reason.strip()) < 3:
        raise SitePulseError("--reason: say why, in a few words")
    services = discover_services(get_settings().load_services)
    if name not in services:
        raise SitePulseError(f"service {name!r} is not installed")
    with _database() as conn:
        if not site_exists(conn, check_site_id(site)):
            raise SitePulseError(f"site {site!r} not found")
        check_usable_on_site(conn, services, name, site)  # its refusals are SitePulseErrors: one line
        switch = set_enablement(conn, services, site, name, enabled=None, stage=stage, changed_by=CLI_USER,
                                reason=reason.strip())
    err.print(f"[green]{name}[/] on {site}: stage {switch.stage}, {'on' if switch.enabled else 'off'}; "
              f"next: {', '.join(NEXT_STAGES[switch.stage])}", highlight=False)


def needs_list(
    site: Annotated[str, typer.Option("--site", "-s", help="site id")],
    status: Annotated[str | None, typer.Option(help="open, answered or dropped")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv")] = OutputFormat.table,
) -> None:
    """A site's needs, highest priority (value / effort) first."""
    with _database() as conn:
        needs = [n.as_dict() for n in list_needs(conn, check_site_id(site), status)]
    if fmt is OutputFormat.json:
        _print_json(needs)
        return
    columns = ("id", "priority", "value_score", "effort", "status", "service", "raised_by", "text")
    if fmt is OutputFormat.csv:
        typer.echo(",".join(columns))
        for need in needs:
            typer.echo(",".join(_csv_cell(need[c]) for c in columns))
        return
    table = Table(title=f"Needs of {site}, by priority (value / effort)")
    for column in ("id", "priority", "value", "effort", "status", "service", "raised by", "need"):
        table.add_column(column)
    for need in needs:
        table.add_row(str(need["id"]), f"{need['priority']:.2f}", str(need["value_score"]), str(need["effort"]),
                      need["status"], need["service"] or "-", need["raised_by"], need["text"])
    out.print(table)


def needs_add(
    site: Annotated[str, typer.Option("--site", "-s", help="site id")],
    text: Annotated[str, typer.Option("--text", "-t", help="the need, in plain words")],
    value: Annotated[int, typer.Option("--value", min=1, max=10, help="value to the site, 1-10")],
    effort: Annotated[int, typer.Option("--effort", min=1, max=10, help="effort to build, 1-10")],
    service: Annotated[str | None, typer.Option("--service", help="the service that answers it")] = None,
    raised_by: Annotated[str, typer.Option("--by", help="who raised it")] = CLI_USER,
) -> None:
    """Add a need to a site's backlog."""
    with _database() as conn:
        if not site_exists(conn, check_site_id(site)):
            raise SitePulseError(f"site {site!r} not found")
        need = add_need(conn, site, text, raised_by, value, effort, service)
    err.print(f"[green]added[/] need {need.id} to {site} with priority {float(need.priority):.2f}", highlight=False)
    typer.echo(need.id)


def evaluate(
    site: Annotated[str | None, typer.Option("--site", "-s", help="site id; default every site")] = None,
    window_days: Annotated[int, typer.Option(min=2, max=365, help="days compared each side")] = Rules.window_days,
    as_of: Annotated[str | None, typer.Option("--as-of", help="evaluate as at (date or RFC 3339)")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv")] = OutputFormat.table,
) -> None:
    """Adoption and value KPIs before/after each service was switched on, and scale / iterate / retire."""
    services = discover_services(get_settings().load_services)
    moment = parse_user_time(as_of, "--as-of") if as_of else datetime.now(UTC)
    rules = Rules(window_days=window_days)
    with _database() as conn:
        if site is not None and not site_exists(conn, check_site_id(site)):
            raise SitePulseError(f"site {site!r} not found")
        items = run_evaluation(conn, services, [site] if site else None, as_of=moment, rules=rules)
    if fmt is OutputFormat.json:
        _print_json(evaluation_body(items, moment, rules))
        return
    if fmt is OutputFormat.csv:
        sys.stdout.write(evaluation_csv(items))
        return
    table = Table(title=f"Evaluation as of {moment:%Y-%m-%d %H:%M} UTC ({window_days} days each side)",
                  show_lines=True)
    for column in ("site", "service", "stage", "recommendation", "adoption", "KPIs: before -> after, diff [interval]"):
        table.add_column(column)
    colours = {"scale": "green", "iterate": "yellow", "retire": "red"}
    for item in items:
        use = item["adoption"]
        adoption = (f"{use['distinct_users']} users, {use['active_days']}/{use['days']} days\n"
                    f"{_fmt(use['views_per_day'])} views/day, acks {_fmt(use['ack_share'], pct=True)}")
        kpis = "\n".join(_kpi_line(k) for k in item["kpis"]) or "(no KPI declared)"
        rec = item["recommendation"]
        table.add_row(item["site_id"], item["service"], item["stage"] or "-", f"[{colours[rec]}]{rec}[/]",
                      adoption, kpis)
    out.print(table)
    if not items:
        err.print("no service has been switched on for these sites yet")
    out.print("[bold]Rules[/]")
    for rule in rules.describe():
        out.print(f"- {rule}", highlight=False)


def usage(
    start: Annotated[str, typer.Option("--from", help="start date or RFC 3339 time (inclusive)")],
    end: Annotated[str, typer.Option("--to", help="end date or RFC 3339 time (exclusive)")],
    site: Annotated[str | None, typer.Option("--site", "-s", help="one site; default every site")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv")] = OutputFormat.table,
) -> None:
    """Usage per customer, site and service over a period: active days, machines, calls, alerts, volume."""
    services = discover_services(get_settings().load_services)
    begin, finish = parse_user_time(start, "--from"), parse_user_time(end, "--to")
    with _database() as conn:
        items = usage_report(conn, services, begin, finish, [check_site_id(site)] if site else None)
    if fmt is OutputFormat.json:
        _print_json({"from": begin, "to": finish, "items": items, "by_customer": by_customer(items)})
        return
    if fmt is OutputFormat.csv:
        sys.stdout.write(usage_csv(items))
        return
    table = Table(title=f"Usage {begin:%Y-%m-%d %H:%M} to {finish:%Y-%m-%d %H:%M} UTC")
    for column in ("customer", "site", "service", "active days", "users", "calls", "card views", "exports",
                   "alerts (acked)", "machines", "volume"):
        table.add_column(column)
    for item in items:
        volume = item["volume"]
        table.add_row(item["customer"], item["site_id"], item["service"], str(item["active_days"]),
                      str(item["distinct_users"]), str(item["calls"]), str(item["card_views"]), str(item["exports"]),
                      f"{item['alerts_delivered']} ({item['alerts_acknowledged']})", str(item["machines_covered"]),
                      f"{volume['value']:,.1f} {volume['unit']}" if volume else "-")
    out.print(table)


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if pct else f"{value:.3g}"


def _kpi_line(kpi: dict[str, Any]) -> str:
    name = f"{kpi['name']} ({kpi['unit']}, {'higher' if kpi['higher_is_better'] else 'lower'} is better)"
    if kpi["difference"] is None:
        return f"{name}: {kpi['verdict']}" + (f" ({kpi['error']})" if kpi.get("error") else "")
    low, high = kpi["interval"]
    return (f"{name}: {_fmt(kpi['before']['mean'])} -> {_fmt(kpi['after']['mean'])}, "
            f"{kpi['difference']:+.3g} [{low:+.3g}, {high:+.3g}] {kpi['verdict']}")


def _csv_cell(value: Any) -> str:
    text = "" if value is None else inert(str(value))
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text
