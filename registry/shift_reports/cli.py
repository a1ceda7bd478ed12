"""``sitepulse report``: a site's report for any past period, written to a file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from microservices.discovery import discover_services
from registry.shift_reports.compose import compose_report
from registry.shift_reports.formats import render
from sitepulse.db import connect
from sitepulse.errors import InvalidInput
from sitepulse.runtime import open_runtime
from sitepulse.settings import get_settings
from sitepulse.sites import check_site_id
from sitepulse.times import parse_user_time

err = Console(stderr=True)


class ReportFormat(StrEnum):
    pdf = "pdf"
    xlsx = "xlsx"
    csv = "csv"


def report(
    site: Annotated[str, typer.Option("--site", "-s", help="the site")],
    start: Annotated[str, typer.Option("--from", help="start: a date (UTC midnight) or an RFC 3339 time")],
    end: Annotated[str, typer.Option("--to", help="end (exclusive): a date or an RFC 3339 time")],
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    fmt: Annotated[ReportFormat, typer.Option("--format", help="pdf, xlsx or csv")] = ReportFormat.pdf,
) -> None:
    """Write the site's report for [--from, --to): each enabled service's section, as PDF, XLSX or CSV."""
    begin, finish = parse_user_time(start, "--from"), parse_user_time(end, "--to")
    if finish <= begin:
        raise InvalidInput("--to must be after --from")
    if not output.parent.is_dir():
        raise InvalidInput(f"cannot write {output}: folder {output.parent} does not exist")
    services = discover_services(get_settings().load_services)
    with open_runtime(get_settings(), broker=False) as runtime, connect(runtime.database_url) as conn:
        made = compose_report(conn, services, check_site_id(site), begin, finish)
    output.write_bytes(render(made, fmt.value))
    err.print(f"[green]wrote[/] {output} ({fmt.value}, {len(made.sections)} sections, {made.period_text})",
              highlight=False)
