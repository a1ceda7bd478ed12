"""``sitepulse status``: a terminal status from the database and broker, starting nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from ingest.metrics import IngestCounters, save_counters
from stack.status import status

app = typer.Typer()
app.command()(status)


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_status_shows_workers_lag_health_and_sites(
    database_url: str, mqtt_broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        save_counters(conn, "host-a:11:0", IngestCounters(received_messages=120, stored_rows=118, rejected=2))
        conn.execute("INSERT INTO sites (site_id, name, config) VALUES ('north', 'North pit', '{}')")
        conn.execute("INSERT INTO service_enablement (site_id, service, enabled, enabled_at, stage)"
                     " VALUES ('north', 'weight-loading', true, now(), 'pilot')")
        conn.execute("INSERT INTO service_checkpoints (service, site_id, rows_processed, data_until)"
                     " VALUES ('weight-loading', 'north', 500, %s)", (datetime.now(UTC) - timedelta(minutes=3),))
        conn.execute("INSERT INTO service_health (service, status, failures, last_error)"
                     " VALUES ('weight-loading', 'failing', 2, 'boom: division by zero')")
    monkeypatch.setenv("SITEPULSE_DATABASE_URL", database_url)
    monkeypatch.setenv("SITEPULSE_MQTT_URL", mqtt_broker.url)
    code, out = _invoke()
    assert code == 0, out
    assert "database" in out and "flavour postgres" in out and "broker" in out and "unreachable" not in out
    assert "host-a:11:0" in out and "118" in out
    assert "weight-loading" in out and "3m" in out and "failing (2)" in out and "boom" in out
    assert "North pit" in out
    assert "storage" in out and "plain PostgreSQL" in out and "run TimescaleDB in production" in out
    code, out = _invoke("--json")
    body = json.loads(out)
    assert body["problems"] == {} and body["flavor"] == "postgres"
    assert body["storage"]["engine"] == "plain PostgreSQL" and body["storage"]["warning"]
    assert body["services"][0]["lag_s"] == pytest.approx(180, abs=30)


def test_status_starts_nothing_and_says_so(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITEPULSE_DATABASE_URL", raising=False)
    monkeypatch.delenv("SITEPULSE_MQTT_URL", raising=False)
    monkeypatch.setenv("SITEPULSE_DATA_DIR", str(tmp_path))
    code, out = _invoke()
    assert code == 1
    assert "nothing running" in out
    assert not (tmp_path / "postgres").exists()  # no embedded server was started


def test_status_reports_an_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEPULSE_DATABASE_URL", "postgresql://x:y@127.0.0.1:1/none")
    monkeypatch.setenv("SITEPULSE_MQTT_URL", "mqtt://127.0.0.1:1")
    code, out = _invoke()
    assert code == 1 and "unreachable" in out and "y@" not in out  # password masked
