"""The registry's lifecycle, needs, evaluation and usage commands, mounted as ``sitepulse`` mounts them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from registry import cli
from sitepulse.settings import get_settings


@pytest.fixture
def app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("SITEPULSE_DATABASE_URL", database_url)
    monkeypatch.setenv("SITEPULSE_LOAD_SERVICES", "")
    get_settings.cache_clear()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (site_id, name, config) VALUES ('cli-site', 'CLI', '{}')"
                     " ON CONFLICT DO NOTHING")
    app = typer.Typer()
    needs = typer.Typer()
    needs.command("list")(cli.needs_list)
    needs.command("add")(cli.needs_add)
    app.add_typer(needs, name="needs")
    app.command("evaluate")(cli.evaluate)
    app.command("usage")(cli.usage)
    yield app
    get_settings.cache_clear()


def test_needs_add_and_list(app: typer.Typer) -> None:
    runner = CliRunner()
    added = runner.invoke(app, ["needs", "add", "--site", "cli-site", "--text", "Queue minutes per load",
                                "--value", "8", "--effort", "2"])
    assert added.exit_code == 0, added.output
    runner.invoke(app, ["needs", "add", "--site", "cli-site", "--text", "Tyre wear", "--value", "3", "--effort", "6"])
    listed = runner.invoke(app, ["needs", "list", "--site", "cli-site", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert [n["text"] for n in json.loads(listed.stdout)] == ["Queue minutes per load", "Tyre wear"]
    bad = runner.invoke(app, ["needs", "add", "--site", "cli-site", "--text", "x", "--value", "11", "--effort", "2"])
    assert bad.exit_code == 2


def test_evaluate_and_usage_print_tables_json_and_csv(app: typer.Typer) -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["evaluate", "--site", "cli-site"])
    assert table.exit_code == 0, table.output
    assert "scale: adopted, at least one KPI improved" in table.stdout
    body = json.loads(runner.invoke(app, ["evaluate", "--format", "json"]).stdout)
    assert body["items"] == [] and body["rules"]
    usage = runner.invoke(app, ["usage", "--from", "2026-01-01", "--to", "2026-02-01", "--format", "csv"])
    assert usage.exit_code == 0, usage.output
    assert usage.stdout.startswith("customer,site_id,service,from,to")
    naive = runner.invoke(app, ["usage", "--from", "2026-01-01T00:00", "--to", "2026-02-01"])
    assert naive.exit_code != 0
