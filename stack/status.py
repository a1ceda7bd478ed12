"""``sitepulse status``: what is running, for a terminal, without starting anything.

It reads the configured servers (``SITEPULSE_DATABASE_URL`` / ``SITEPULSE_MQTT_URL``) or, when
those are unset, the embedded servers a running ``sitepulse serve`` left in the data directory
(``postmaster.pid`` and the rendered ``mosquitto.conf``). It never starts a server: with
nothing running it says so. It lives in the composition root, not the kernel, because it reads every package's
state, each through its owner's functions (ingest's worker reports, the runner's progress, the registry's
switches, the kernel's sites). Shown: database reachability and flavour, broker reachability,
each ingest worker's last report and counters (``ingest_worker_stats``), each service's lag
per site (``now() - data_until`` of ``service_checkpoints``) with that site's health
(``service_pairs``, else the service's ``service_health``), and the sites with the services enabled on them.

Exit code 0 when the database is reachable, 1 when it is not (scripts can test it).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
import psycopg
import typer
from rich.console import Console
from rich.table import Table

from ingest.metrics import STALE_AFTER_S, add_decoder_counts, worker_reports
from ingest.reader import newest_arrival
from microservices.progress import Progress, service_progress
from registry.enablement import enablements_for_sites
from sitepulse.embedded.broker import listener_address
from sitepulse.settings import Settings, load_settings, mask_url
from sitepulse.sites import site_names
from sitepulse.storage import Storage, collect_storage

EMBEDDED_DATABASE = "sitepulse"  # as sitepulse.runtime.EMBEDDED_DATABASE
EMBEDDED_SUPERUSER = "postgres"  # as sitepulse.embedded.postgres.SUPERUSER


@dataclass
class WorkerStatus:
    worker_id: str
    host: str
    pid: int
    updated_at: datetime
    age_s: float
    received: int
    stored: int
    rejected: int
    duplicates: int
    lag_s: float

    @property
    def up(self) -> bool:
        return self.age_s < STALE_AFTER_S


@dataclass
class SiteStatus:
    site_id: str
    name: str
    services: list[str]


@dataclass
class Status:
    """Everything ``sitepulse status`` shows, read from one database connection."""

    flavor: str
    server_version: str
    newest_telemetry_at: datetime | None = None
    telemetry_age_s: float | None = None
    workers: list[WorkerStatus] = field(default_factory=list)
    services: list[Progress] = field(default_factory=list)  # per service and site
    sites: list[SiteStatus] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # tables not there yet (migrations not applied)
    storage: Storage | None = None
    # per decoder over all workers (decoders/): {"messages": n, "rejects": {reason class: n}}
    decoders: dict[str, dict[str, Any]] = field(default_factory=dict)


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def collect_status(conn: psycopg.Connection) -> Status:
    """Read the status from a connected database (read-only queries)."""
    timescale = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    version = conn.execute("SHOW server_version").fetchone()[0]
    status = Status(
        flavor="timescaledb" if timescale else "postgres",
        server_version=f"PostgreSQL {version}" + (f", TimescaleDB {timescale[0]}" if timescale else ""),
    )
    needed = ("telemetry", "ingest_worker_stats", "service_checkpoints", "service_health", "sites",
              "service_enablement")
    status.missing = [t for t in needed if not _table_exists(conn, t)]
    if status.missing:
        return status
    status.storage = collect_storage(conn)
    status.newest_telemetry_at, status.telemetry_age_s = newest_arrival(conn)
    for worker_id, host, pid, updated_at, age, counters in worker_reports(conn):
        status.workers.append(WorkerStatus(
            worker_id, host, pid, updated_at, age,
            int(counters.get("received_messages", 0)), int(counters.get("stored_rows", 0)),
            int(counters.get("rejected", 0)), int(counters.get("duplicate_rows", 0)),
            float(counters.get("lag_seconds", 0.0)),
        ))
        add_decoder_counts(status.decoders, counters)
    status.services = service_progress(conn)
    enabled: dict[str, list[str]] = {}
    for switch in enablements_for_sites(conn, None):
        if switch.enabled:
            enabled.setdefault(switch.site_id, []).append(switch.service)
    for site_id, name in site_names(conn):
        status.sites.append(SiteStatus(site_id, name, sorted(enabled.get(site_id, []))))
    return status


# --- where the servers are -------------------------------------------------------------------------


def _embedded_database_url(data_dir: Path) -> str | None:
    """URL of the embedded PostgreSQL that ``sitepulse serve`` left running, if one is."""
    pid_file = data_dir / "postgres" / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # running as another user: still running
    return f"postgresql://{EMBEDDED_SUPERUSER}@127.0.0.1:{port}/{EMBEDDED_DATABASE}"


def _reachable(host: str, port: int, timeout: float = 2) -> str | None:
    """None when a TCP connection succeeds, else the reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


@dataclass
class Targets:
    database_url: str | None
    database_source: str
    broker: tuple[str, int] | None
    broker_source: str


def resolve_targets(settings: Settings) -> Targets:
    """The configured servers, else the embedded ones in the data directory; starts nothing."""
    if settings.database_url:
        db_url, db_source = settings.database_url.get_secret_value(), "SITEPULSE_DATABASE_URL"
    else:
        db_url, db_source = _embedded_database_url(settings.data_dir), f"embedded ({settings.data_dir}/postgres)"
    if settings.mqtt_url:
        parts = urlsplit(settings.mqtt_url.get_secret_value())
        broker = (parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883))
        broker_source = "SITEPULSE_MQTT_URL"
    else:
        folder = settings.data_dir / "mosquitto"
        broker, broker_source = listener_address(folder), f"embedded ({folder})"
    return Targets(db_url, db_source, broker, broker_source)


# --- rendering -------------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def render(console: Console, status: Status) -> None:
    """Rich tables for a terminal."""
    if status.missing:
        console.print(f"[yellow]schema not migrated[/]: missing {', '.join(status.missing)}"
                      " (run `sitepulse db upgrade`)")
        return
    if status.storage is not None:
        colour = "yellow" if status.storage.warning else "green"
        console.print(f"[bold]storage[/] [{colour}]{status.storage.describe()}[/]", highlight=False, soft_wrap=True)
    console.print(f"newest telemetry: {status.newest_telemetry_at or '-'} ({_age(status.telemetry_age_s)} ago)")
    workers = Table(title="Ingest workers", title_justify="left")
    for column in ("worker", "state", "last report", "received", "stored", "rejected", "duplicates", "lag"):
        workers.add_column(column, justify="right" if column not in ("worker", "state") else "left")
    for w in status.workers:
        workers.add_row(w.worker_id, "[green]up[/]" if w.up else "[red]down[/]", f"{_age(w.age_s)} ago",
                        f"{w.received:,}", f"{w.stored:,}", f"{w.rejected:,}", f"{w.duplicates:,}", f"{w.lag_s:.2f}s")
    if not status.workers:
        workers.add_row("(none has reported)", "", "", "", "", "", "", "")
    console.print(workers)
    if status.decoders:
        decoders = Table(title="Decoders (all workers)", title_justify="left")
        for column in ("decoder", "messages", "rejected", "rejects by reason"):
            decoders.add_column(column, justify="right" if column in ("messages", "rejected") else "left")
        for name, entry in sorted(status.decoders.items()):
            rejects = entry["rejects"]
            decoders.add_row(name, f"{entry['messages']:,}", f"{sum(rejects.values()):,}",
                             ", ".join(f"{code} {n:,}" for code, n in sorted(rejects.items())) or "-")
        console.print(decoders)
    services = Table(title="Services (lag = now - newest sample processed)", title_justify="left")
    for column in ("service", "site", "lag", "rows", "replays", "health", "last error"):
        services.add_column(column, justify="right" if column in ("lag", "rows", "replays") else "left")
    for s in status.services:
        colour = {"ok": "green", "failing": "red"}.get(s.health, "yellow")
        error = (s.last_error or "").splitlines()[0][:60] if s.last_error and s.health != "ok" else ""
        services.add_row(s.service, s.site_id, _age(s.lag_s), f"{s.rows_processed:,}", str(s.replays),
                         f"[{colour}]{s.health}[/]" + (f" ({s.failures})" if s.failures else ""), error)
    if not status.services:
        services.add_row("(no service has run)", "", "", "", "", "", "")
    console.print(services)
    sites = Table(title="Sites", title_justify="left")
    sites.add_column("site")
    sites.add_column("name")
    sites.add_column("enabled services")
    for site in status.sites:
        sites.add_row(site.site_id, site.name, ", ".join(site.services) or "-")
    if not status.sites:
        sites.add_row("(no site loaded)", "", "")
    console.print(sites)


def _as_json(status: Status | None, problems: dict[str, Any]) -> str:
    from dataclasses import asdict

    body: dict[str, Any] = {"problems": problems}
    if status is not None:
        body.update(asdict(status))
    return orjson.dumps(body, default=str, option=orjson.OPT_INDENT_2).decode()


def status(
    json_output: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Show database, broker, ingest workers, per-service lag and sites; starts nothing."""
    settings = load_settings()
    console = Console()
    targets = resolve_targets(settings)
    problems: dict[str, Any] = {}
    result: Status | None = None
    if targets.database_url is None:
        problems["database"] = "nothing running: no SITEPULSE_DATABASE_URL and no embedded PostgreSQL in the data dir"
    else:
        try:
            with psycopg.connect(targets.database_url, connect_timeout=3, autocommit=True) as conn:
                result = collect_status(conn)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problems["database"] = f"unreachable ({reason})"
    if targets.broker is None:
        problems["broker"] = "nothing running: no SITEPULSE_MQTT_URL and no embedded Mosquitto in the data dir"
    elif (reason := _reachable(*targets.broker)) is not None:
        problems["broker"] = f"unreachable at {targets.broker[0]}:{targets.broker[1]} ({reason})"
    if json_output:
        print(_as_json(result, problems))
    else:
        db_line = problems.get("database") or f"[green]reachable[/] ({result.server_version}; flavour {result.flavor})"
        where = mask_url(targets.database_url) if targets.database_url else "-"
        console.print(f"[bold]database[/] {where} [{targets.database_source}]: {db_line}", highlight=False)
        broker_where = f"{targets.broker[0]}:{targets.broker[1]}" if targets.broker else "-"
        broker_line = problems.get("broker") or "[green]reachable[/]"
        console.print(f"[bold]broker[/] {broker_where} [{targets.broker_source}]: {broker_line}", highlight=False)
        if result is not None:
            render(console, result)
    if result is None:
        raise typer.Exit(1)
