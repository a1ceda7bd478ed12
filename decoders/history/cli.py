"""``sitepulse import``: bring a site's recorded history (CSV, Parquet, JSON lines) into telemetry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from decoders.history.importer import Importer, Summary
from decoders.history.mapping import load_mapping
from decoders.history.sources import Source, find_files
from ingest.writer import DatabaseUnavailable
from sitepulse.db import connect
from sitepulse.errors import SitePulseError
from sitepulse.runtime import open_runtime
from sitepulse.settings import get_settings
from sitepulse.sites import check_site_id, site_exists

err = Console(stderr=True)


class RowsColumn(ProgressColumn):
    """Rows written so far and rows per second (the bar itself advances by bytes read)."""

    def render(self, task: Task) -> Text:
        rows = task.fields.get("rows", 0)
        elapsed = task.elapsed or 0.0
        rate = rows / elapsed if elapsed > 0 else 0.0
        return Text(f"{rows:,} rows  {rate:,.0f} rows/s", style="cyan")


def import_history(
    paths: Annotated[list[Path], typer.Argument(help="CSV (.csv, .csv.gz), Parquet or JSON-lines files, or folders")],
    site: Annotated[str, typer.Option("--site", help="the site the rows belong to")],
    mapping: Annotated[Path, typer.Option("--mapping", help="mapping file (TOML, docs/IMPORT.md)")],
    again: Annotated[bool, typer.Option("--again", help="read files imported before once more (stores no row twice)")]
    = False,
) -> None:
    """Import recorded telemetry (an export, a logger's files); interrupted, run it again to resume."""
    site_id = check_site_id(site)
    options, digest = load_mapping(mapping)
    sources = [Source.of(p) for p in find_files(paths)]
    if not sources:
        err.print("[yellow]nothing to import:[/] no .csv, .csv.gz, .parquet or .jsonl files found", highlight=False)
        return
    for source in sources:
        source.check(options)
    with open_runtime(get_settings(), broker=False) as runtime:
        with connect(runtime.database_url) as conn:
            if not site_exists(conn, site_id):
                err.print(f"[yellow]warning:[/] site {site_id!r} has no site file loaded yet (sitepulse site load);"
                          " the rows are stored for it anyway", highlight=False)
        importer = Importer(runtime.database_url, site_id, options, digest)
        total = sum(s.size for s in sources)
        with Progress(TextColumn("[bold]import[/]"), BarColumn(), TaskProgressColumn(), RowsColumn(),
                      TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False) as progress:
            task = progress.add_task("import", total=total or 1, rows=0)
            done_before = [0]

            def on_rows(rows: int) -> None:
                read = done_before[0] + sum(s.bytes_read() for s in sources)
                progress.update(task, completed=read, rows=progress.tasks[0].fields["rows"] + rows)

            try:
                summary = importer.run(sources, again, on_rows)
            except KeyboardInterrupt:
                progress.stop()
                print_summary(importer.summary)
                err.print("[yellow]interrupted:[/] what is stored stays stored; the same command resumes",
                          highlight=False)
                raise typer.Exit(130) from None
            except DatabaseUnavailable as exc:
                raise SitePulseError(f"lost the database ({str(exc).strip()[:200]}); what is stored stays stored,"
                                     " the same command resumes") from None
            progress.update(task, completed=total or 1)
    print_summary(summary)


def print_summary(summary: Summary) -> None:
    """Rows read, stored, duplicate and rejected by reason: what a person checks after an import."""
    for name in summary.skipped_files:
        err.print(f"skipped {escape(name)}: imported before with this mapping (--again reads it once more)",
                  highlight=False)
    for name, row in summary.resumed.items():
        err.print(f"resumed {escape(name)} after row {row:,}", highlight=False)
    rejected = sum(summary.rejected.values())
    err.print(f"[green]imported[/] {summary.files} file(s): {summary.read:,} rows read, {summary.stored:,} stored,"
              f" {summary.duplicates:,} duplicate, {rejected:,} rejected", highlight=False)
    if rejected:
        table = Table(title="rejected, by reason (each row with its file:row in ingest_rejects)")
        table.add_column("reason")
        table.add_column("rows", justify="right")
        for reason, count in summary.rejected.most_common(20):
            table.add_row(escape(reason), f"{count:,}")
        err.print(table)
