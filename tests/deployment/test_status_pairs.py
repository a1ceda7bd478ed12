"""``sitepulse status`` shows each (service, site) pair's own health: the failing site, not the whole service."""

from __future__ import annotations

import json

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from microservices.pairs import claim_next, release_failed, release_ok, sync_pairs
from stack.status import status

app = typer.Typer()
app.command()(status)


def test_status_names_the_failing_site_and_keeps_the_healthy_one_ok(
    fresh_database_url: str, mqtt_broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        for site in ("east", "west"):
            conn.execute("INSERT INTO service_enablement (site_id, service, enabled, enabled_at)"
                         " VALUES (%s, 'positioning', true, now())", (site,))
            conn.execute("INSERT INTO service_checkpoints (service, site_id, rows_processed)"
                         " VALUES ('positioning', %s, 9)", (site,))
        sync_pairs(conn, ["positioning"])
        for _ in range(2):
            pair = claim_next(conn, "runner-a", ["positioning"])
            if pair.site_id == "west":
                release_failed(conn, "runner-a", pair, "KeyError: 'zones'")
            else:
                release_ok(conn, "runner-a", pair, None)
    monkeypatch.setenv("SITEPULSE_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("SITEPULSE_MQTT_URL", mqtt_broker.url)
    result = CliRunner().invoke(app, ["--json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {s["site_id"]: s for s in json.loads(result.output)["services"]}
    assert rows["west"]["health"] == "failing" and rows["west"]["failures"] == 1
    assert rows["west"]["last_error"] == "KeyError: 'zones'"
    assert rows["east"]["health"] == "ok" and rows["east"]["failures"] == 0
