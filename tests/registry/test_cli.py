"""The registry's CLI functions, mounted on a Typer app as ``sitepulse`` mounts them, on the test database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from registry import cli
from registry.tokens import hash_token
from sitepulse.settings import get_settings

DEMO_SITE = Path(__file__).parents[2] / "simulators" / "sites" / "demo_quarry.yaml"


@pytest.fixture
def app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("SITEPULSE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    app = typer.Typer()
    tokens = typer.Typer()
    for name in ("create", "list", "revoke"):
        tokens.command(name)(getattr(cli, f"tokens_{name}"))
    app.add_typer(tokens, name="tokens")
    site = typer.Typer()
    site.command("load")(cli.site_load)
    app.add_typer(site, name="site")
    services = typer.Typer()
    services.command("list")(cli.services_list)
    app.add_typer(services, name="services")
    yield app
    get_settings.cache_clear()


def test_tokens_create_prints_the_token_once_and_stores_its_hash(app: typer.Typer,
                                                                  db: psycopg.Connection) -> None:
    args = ["tokens", "create", "--site", "north", "--site", "south", "--name", "ops"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("sp_")
    row = db.execute("SELECT name, role, sites FROM api_tokens WHERE token_hash = %s",
                     (hash_token(token),)).fetchone()
    assert row == ("ops", "site", ["north", "south"])
    listed = CliRunner().invoke(app, ["tokens", "list"])
    assert "ops" in listed.stdout and token not in listed.stdout
    token_id = db.execute("SELECT id FROM api_tokens WHERE name = 'ops'").fetchone()[0]
    assert CliRunner().invoke(app, ["tokens", "revoke", str(token_id)]).exit_code == 0
    revoked = db.execute("SELECT revoked_at FROM api_tokens WHERE id = %s", (token_id,)).fetchone()[0]
    assert revoked is not None


def test_site_load_stores_the_demo_site(app: typer.Typer, db: psycopg.Connection) -> None:
    result = CliRunner().invoke(app, ["site", "load", str(DEMO_SITE), "--site", "demo"])
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT name FROM sites WHERE site_id = 'demo'").fetchone() == ("Demo Quarry",)


def test_site_load_says_what_it_repaired(app: typer.Typer, db: psycopg.Connection, tmp_path: Path) -> None:
    drawn = tmp_path / "quarry.yaml"
    drawn.write_text("name: Quarry\nzones: [{id: north-pit, name: North pit, type: load, polygon: [[18.0, 59.0], "
                     "[18.002, 59.0], [18.002, 59.001], [18.0, 59.001], [18.0000014, 58.9999993]]}]\n")
    result = CliRunner().invoke(app, ["site", "load", str(drawn)])
    assert result.exit_code == 0, result.output
    assert "warning: zone 'north-pit' (North pit): polygon crossed itself near corner 5 of 5" in result.output
    assert db.execute("SELECT name FROM sites WHERE site_id = 'quarry'").fetchone() == ("Quarry",)


def test_services_list_needs_no_database(app: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEPULSE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["services", "list"])
    assert result.exit_code == 0, result.output
    assert "Installed micro-services" in result.stdout
