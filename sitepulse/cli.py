"""The ``sitepulse`` command: one entry point for every role, each printing what it started and where.

Commands come from the installed packages through the entry-point group ``sitepulse.cli``: the
kernel imports none of them. An entry named ``NAME`` is a command (a function) or a group (a
``typer.Typer``); ``GROUP.NAME`` puts a command in a group, so several packages can fill one
group (``services.list`` from the registry, ``services.new`` from the SDK). The kernel's own
commands (``config``, ``db upgrade``, ``status``) are entries too; ``--help`` lists commands, then
groups, each by name. A command's module is imported only when it runs (sitepulse/lazy_commands.py):
``--help`` reads the help lines from the sources and answers without importing pandas, numba or FastAPI.

User errors (bad settings, unreachable servers, bad files, a broken plugin) print one red line and exit 2.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import typer

from sitepulse.errors import SitePulseError
from sitepulse.lazy_commands import LazyGroup
from sitepulse.warm import announce_compiles

ENTRY_POINT_GROUP = "sitepulse.cli"

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
    from rich.console import Console
    from rich.table import Table

    from sitepulse.settings import config_file_path, get_settings

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
    from rich.console import Console

    from sitepulse.db import connect
    from sitepulse.logs import configured_settings
    from sitepulse.migrations import upgrade
    from sitepulse.runtime import open_runtime

    settings = configured_settings()
    with open_runtime(settings, broker=False, migrate=False) as runtime:
        with connect(runtime.database_url, autocommit=True) as conn:
            applied = upgrade(conn)
        Console(stderr=True).print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {a}" for a in applied))


def _root() -> None:
    """SitePulse: fleet telemetry into small, evaluated micro-services."""


def build_app(entries: list[EntryPoint] | None = None) -> typer.Typer:
    """The root command with every contributed command and group mounted (none of them imported yet)."""
    found = entries if entries is not None else entry_points(group=ENTRY_POINT_GROUP)
    group = type("SitePulseCommands", (LazyGroup,), {
        "entries": tuple((entry.name, entry) for entry in found), "group_help": GROUP_HELP})
    return typer.Typer(name="sitepulse", cls=group, callback=_root, no_args_is_help=True, add_completion=False,
                       help=_root.__doc__)


_app = build_app()


def app() -> None:
    """Console-script entry point: run the CLI, turning user errors into one line."""
    announce_compiles()
    try:
        _app()
    except SitePulseError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
