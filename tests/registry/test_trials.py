"""A trial on history through the real API, database and CLI: weight loading tried on a site's recorded hour finds
the simulated loads and dumps, keeps its rows apart from the site's, raises no alert, and counts as adoption."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from evaluation.stored import insert_telemetry
from evaluation.weight_loading import match, simulated
from microservices.weight_loading import WeightLoading
from registry.api.app import create_app
from registry.api.state import state_of
from sitepulse.cli import build_app
from sitepulse.migrations import MigrationSource, upgrade
from sitepulse.settings import get_settings, load_settings
from sitepulse.sites import save_site

ADMIN_TOKEN = "trial-admin-token-for-tests-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SITE = "trial-quarry"


@pytest.fixture(scope="module")
def history(database_url: str) -> tuple[str, pd.DataFrame, list[dict]]:
    """One recorded hour of the demo quarry stored for the site; weight loading never switched on there."""
    telemetry, truth, site, _ = simulated(4, 1.0, hz=1.0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        upgrade(conn, [MigrationSource("weight-loading", Path(WeightLoading.migrations), 100)])
        save_site(conn, SITE, site)
        insert_telemetry(conn, telemetry.assign(site_id=SITE))
    return database_url, telemetry, truth


@pytest.fixture(scope="module")
def client(history: tuple[str, pd.DataFrame, list[dict]], mqtt_broker: Any) -> Iterator[TestClient]:
    app = create_app(history[0], mqtt_broker.url, services={"weight-loading": WeightLoading()},
                     settings=load_settings(admin_token=ADMIN_TOKEN))
    with TestClient(app) as test_client:
        yield test_client


def _finished(client: TestClient, trial_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        trial = client.get(f"/api/v1/sites/{SITE}/trials/{trial_id}", headers=ADMIN).json()
        if trial["status"] != "running":
            return trial
        time.sleep(0.2)
    raise AssertionError(f"trial {trial_id} still running after 60 s")


def test_a_trial_finds_the_loads_and_dumps_apart_from_live_results(client: TestClient, history) -> None:
    url, telemetry, truth = history
    period = {"from": (telemetry["ts"].min()).isoformat(), "to": (telemetry["ts"].max() + pd.Timedelta(seconds=1))
              .isoformat()}
    started = client.post(f"/api/v1/sites/{SITE}/services/weight-loading/trials", json=period, headers=ADMIN)
    assert started.status_code == 202, started.text
    trial = _finished(client, started.json()["id"])
    assert trial["status"] == "done", trial["error"]
    assert trial["samples"] == len(telemetry)

    rows = client.get(f"/api/v1/sites/{SITE}/trials/{trial['id']}/rows",
                      params={"table": "weight_loading.cycles", "limit": 1000}, headers=ADMIN).json()["items"]
    cycles = pd.DataFrame(rows)
    for column in ("loaded_at", "dumped_at"):
        cycles[column] = pd.to_datetime(cycles[column], utc=True)
    true = pd.DataFrame([r for r in truth if r["type"] == "cycle"])
    for column in ("loaded_at", "dumped_at"):
        true[column] = pd.to_datetime(true[column], utc=True, format="ISO8601")
    true = true[true["dumped_at"] <= telemetry["ts"].max() - pd.Timedelta(minutes=5)]
    pairs = match(cycles, true.reset_index(drop=True))
    assert len(true) >= 10 and len(pairs) >= 0.9 * len(true), (len(pairs), len(true), len(cycles))
    assert trial["found"]["weight_loading.cycles"] == len(cycles)
    assert {k["name"] for k in trial["kpis"]} >= {"tonnes_per_operating_hour", "overload_share"}
    tonnes = next(k for k in trial["kpis"] if k["name"] == "tonnes_per_operating_hour")
    assert tonnes["trial_mean"] > 0 and tonnes["site_mean"] is None  # the site had no such results

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM weight_loading.cycles WHERE site_id = %s", (SITE,)
                            ).fetchone()[0] == 0  # live results untouched
        assert conn.execute("SELECT count(*) FROM service_alerts WHERE site_id LIKE %s", (f"{SITE}%",)
                            ).fetchone()[0] == 0  # no alert raised
    stage = client.get(f"/api/v1/sites/{SITE}/services/weight-loading/stage-history", headers=ADMIN).json()
    assert stage["stage"] == "trial" and stage["items"][-1]["changed_by"] == "bootstrap-admin"

    listed = client.get(f"/api/v1/sites/{SITE}/trials", headers=ADMIN).json()["items"]
    assert [t["id"] for t in listed][:1] == [trial["id"]]
    state_of(client.app).usage.flush()
    with psycopg.connect(url) as conn:
        views = conn.execute("SELECT count(*) FROM usage_events WHERE site_id = %s AND service = 'weight-loading'"
                             " AND action = 'trial_view'", (SITE,)).fetchone()[0]
    assert views >= 2  # each read of the trial is adoption evidence

    # switched on after the trial: the trial stays, its results still apart ("before")
    on = client.put(f"/api/v1/sites/{SITE}/services/weight-loading", json={"enabled": True}, headers=ADMIN)
    assert on.status_code == 200, on.text
    assert on.json()["stage"] == "pilot"
    assert client.get(f"/api/v1/sites/{SITE}/trials/{trial['id']}", headers=ADMIN).json()["status"] == "done"


def test_a_trial_refuses_a_bad_period_in_one_line(client: TestClient) -> None:
    base = f"/api/v1/sites/{SITE}/services/weight-loading/trials"
    backwards = client.post(base, json={"from": "2026-01-05T10:00:00Z", "to": "2026-01-05T09:00:00Z"}, headers=ADMIN)
    assert backwards.status_code == 422 and "must be after" in backwards.json()["detail"]
    long = client.post(base, json={"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, headers=ADMIN)
    assert long.status_code == 422 and "at most 92 days" in long.json()["detail"]
    assert client.post(f"/api/v1/sites/{SITE}/services/nope/trials", json={"from": "2026-01-05T09:00:00Z",
                       "to": "2026-01-05T10:00:00Z"}, headers=ADMIN).status_code == 404
    assert client.post(base, json={"from": "2026-01-05T09:00:00Z", "to": "2026-01-05T10:00:00Z"}).status_code == 401
    assert client.get(f"/api/v1/sites/{SITE}/trials/999999", headers=ADMIN).status_code == 404


@pytest.fixture
def cli_settings(history, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's settings point at the test database (read once per process: cleared before and after)."""
    monkeypatch.setenv("SITEPULSE_DATABASE_URL", history[0])
    monkeypatch.setenv("SITEPULSE_LOAD_SERVICES", "weight-loading")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_cli_runs_a_trial_and_prints_what_it_found(history, cli_settings: None) -> None:
    _, telemetry, _ = history
    start = telemetry["ts"].min()
    result = CliRunner().invoke(build_app(), ["services", "trial", "weight-loading", "--site", SITE,
                                              "--from", start.isoformat(),
                                              "--to", (start + pd.Timedelta(minutes=30)).isoformat()])
    assert result.exit_code == 0, result.output
    assert "weight_loading.cycles" in result.output and "tonnes_per_operating_hour" in result.output
    bad = CliRunner().invoke(build_app(), ["services", "trial", "weight-loading", "--site", SITE,
                                           "--from", "yesterday", "--to", "2026-01-01"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
