"""The ``sitepulse`` command: one entry point for every role, each printing what it started and where.

Commands come from the installed packages through the entry-point group ``sitepulse.cli``: the
kernel imports none of them. An entry named ``NAME`` is a command (a function) or a group (a
``typer.Typer``); ``GROUP.NAME`` puts a command in a group, so several packages can fill one
group (``services.list`` from the registry, ``services.new`` from the SDK). The kernel's own
commands (``config``, ``db upgrade``, ``status``) are entries too; ``--help`` lists commands, then
groups, each by name (entry points carry no order).

User errors (bad settings, unreachable servers, bad files) print one red line and exit 2.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from sitepulse.errors import SitePulseError
from sitepulse.logs import configured_settings
from sitepulse.runtime import open_runtime
from sitepulse.settings import config_file_path, get_settings

ENTRY_POINT_GROUP = "sitepulse.cli"

console = Console(stderr=True)
log = logging.getLogger("sitepulse")

# Help of the groups several packages add commands to; a plugin's own group gets a plain one.
GROUP_HELP = {
    "db": "Database schema.",
    "services": "Micro-services: list installed, scaffold a new one.",
    "tokens": "API tokens scoped to sites.",
    "site": "Sites: load a site file, suggest zones from telemetry.",
    "needs": "The needs backlog of a site.",
}


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


def db_upgrade() -> None:
    """Apply every pending migration of every installed package and service."""
    settings = configured_settings()
    with open_runtime(settings, broker=False, migrate=False) as runtime:
        from sitepulse.db import connect
        from sitepulse.migrations import upgrade

        with connect(runtime.database_url, autocommit=True) as conn:
            applied = upgrade(conn)
        console.print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {a}" for a in applied))


def _load(entry: EntryPoint) -> Any | None:
    """The entry's command or group; a package that fails to import costs its commands, not the CLI."""
    try:
        return entry.load()
    except Exception as exc:  # a broken plugin: say which, keep every other command working
        console.print(f"[yellow]warning:[/] command {entry.name!r} from {entry.value} is unavailable: "
                      f"{type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)
        return None


def build_app(entries: list[EntryPoint] | None = None) -> typer.Typer:
    """The root command with every contributed command and group mounted."""
    root = typer.Typer(name="sitepulse", no_args_is_help=True, add_completion=False,
                       help="SitePulse: fleet telemetry into small, evaluated micro-services.")
    groups: dict[str, typer.Typer] = {}
    for entry in entries if entries is not None else entry_points(group=ENTRY_POINT_GROUP):
        target = _load(entry)
        if target is None:
            continue
        group_name, _, name = entry.name.rpartition(".")
        if not group_name and isinstance(target, typer.Typer):
            root.add_typer(target, name=name)
            continue
        parent = root
        if group_name:
            if group_name not in groups:
                groups[group_name] = typer.Typer(
                    no_args_is_help=True, help=GROUP_HELP.get(group_name, f"The {group_name} commands."))
                root.add_typer(groups[group_name], name=group_name)
            parent = groups[group_name]
        parent.command(name)(target)
    return root


_app = build_app()


def app() -> None:
    """Console-script entry point: run the CLI, turning user errors into one line."""
    try:
        _app()
    except SitePulseError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
