"""Registry commands for ``sitepulse``: tokens, site loading and the service list (plain typer functions).

Mount them in ``sitepulse.cli``::

    tokens = typer.Typer(no_args_is_help=True, help="API tokens.")
    tokens.command("create")(registry.cli.tokens_create)
    tokens.command("list")(registry.cli.tokens_list)
    tokens.command("revoke")(registry.cli.tokens_revoke)
    _app.add_typer(tokens, name="tokens")
    site = typer.Typer(no_args_is_help=True, help="Sites.")
    site.command("load")(registry.cli.site_load)
    _app.add_typer(site, name="site")
    services = typer.Typer(no_args_is_help=True, help="Micro-services.")
    services.command("list")(registry.cli.services_list)
    _app.add_typer(services, name="services")

Errors a user can cause raise SitePulseError, which ``sitepulse`` prints as one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from microservices.discovery import discover_services
from registry.auth import create_token, list_tokens, revoke_token
from sitepulse.db import connect
from sitepulse.errors import SitePulseError
from sitepulse.runtime import open_runtime
from sitepulse.settings import get_settings
from sitepulse.sitefile import load_site_file
from sitepulse.sites import check_site_id, save_site

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
        created = save_site(conn, site_id, site)
    err.print(f"[green]{'created' if created else 'replaced'}[/] site {site_id!r} ({site.name}): "
              f"{len(site.zones)} zones, {len(site.machines)} machines", highlight=False)


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
