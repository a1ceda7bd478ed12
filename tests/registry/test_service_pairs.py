"""Runner health per (service, site) in the API and /metrics, and an admin's "retry now"."""

from __future__ import annotations

import psycopg

from microservices.pairs import Pair, claim_next, release_failed, release_ok, sync_pairs


def _fail_south_and_run_north(db: psycopg.Connection) -> None:
    """What a runner records when 'things' raises on south and runs fine on north."""
    db.execute("DELETE FROM service_pairs")  # the module's database: start each test from no runner history
    sync_pairs(db, ["things"])
    for _ in range(2):
        pair = claim_next(db, "test-runner", ["things"])
        assert pair is not None
        if pair.site_id == "south":
            release_failed(db, "test-runner", pair, "ValueError: south's settings are wrong")
        else:
            release_ok(db, "test-runner", pair, None)


def _sites(api, headers: dict[str, str]) -> dict[str, dict]:
    items = api.client.get("/api/v1/services", headers=headers).json()["items"]
    return {s["site_id"]: s["health"] for s in next(i for i in items if i["name"] == "things")["sites"]}


def test_each_site_shows_its_own_health_and_admins_see_the_error(api, db: psycopg.Connection) -> None:
    api.enable("north", "base", "things")
    api.enable("south", "base", "things")
    _fail_south_and_run_north(db)
    admin = _sites(api, api.admin)
    assert admin["south"]["status"] == "failing" and admin["south"]["failures"] == 1
    assert admin["south"]["last_error"] == "ValueError: south's settings are wrong"
    assert admin["south"]["retry_at"] is not None
    assert admin["north"]["status"] == "ok" and admin["north"]["failures"] == 0
    north_view = _sites(api, api.north)
    assert set(north_view) == {"north"}  # south is not the north manager's to see
    assert north_view["north"]["status"] == "ok" and "last_error" not in north_view["north"]

    db.execute("INSERT INTO service_checkpoints (service, site_id, rows_processed, data_until) VALUES"
               " ('things', 'north', 1234, '2026-01-05T06:30:00Z') ON CONFLICT (service, site_id) DO UPDATE"
               " SET rows_processed = 1234, data_until = '2026-01-05T06:30:00Z'")
    items = api.client.get("/api/v1/services", headers=api.north).json()["items"]
    [north] = next(i for i in items if i["name"] == "things")["sites"]
    assert north["progress"]["rows_processed"] == 1234  # an import being caught up shows here
    assert north["progress"]["data_until"].startswith("2026-01-05T06:30:00")

    metrics = api.client.get("/metrics", headers=api.admin).text
    assert 'sitepulse_service_site_failures{service="things",site="south"} 1' in metrics
    assert 'sitepulse_service_site_failures{service="things",site="north"} 0' in metrics


def test_an_admin_retries_a_failing_pair_now(api, db: psycopg.Connection) -> None:
    api.enable("north", "base", "things")
    api.enable("south", "base", "things")
    _fail_south_and_run_north(db)
    assert claim_next(db, "test-runner", ["things"]) is None  # south is backing off
    assert api.client.post("/api/v1/services/things/sites/south/retry", headers=api.north).status_code == 404
    assert api.client.post("/api/v1/services/things/sites/north/retry", headers=api.north).status_code == 403
    response = api.client.post("/api/v1/services/things/sites/south/retry", headers=api.admin)
    assert response.status_code == 200
    assert response.json()["retry_at"] is None and response.json()["failures"] == 1
    assert claim_next(db, "test-runner", ["things"]) == Pair("things", "south")
    never_ran = api.client.post("/api/v1/services/top/sites/north/retry", headers=api.admin)
    assert never_ran.status_code == 404
    assert never_ran.json()["detail"] == "service 'top' has not run on site 'north'"
