"""Usage events: recorded for service-route calls, card views and alert acknowledgements, written in batches
off the request path, nothing lost on a clean shutdown; and the access log a customer reads."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from microservices.sdk import Outputs, Service
from registry.api.app import create_app
from registry.api.state import record_card_views, state_of
from registry.enablement import set_enablement
from registry.usage import UsageRecorder
from sitepulse.settings import load_settings

ADMIN_TOKEN = "bootstrap-admin-token-for-usage-tests-0123456789"


def _events(db: psycopg.Connection, site: str, action: str | None = None) -> list[tuple]:
    return db.execute("SELECT site_id, service, principal, action, detail FROM usage_events WHERE site_id = %s"
                      " AND (%s::text IS NULL OR action = %s) ORDER BY id", (site, action, action)).fetchall()


def _flush(api) -> None:
    assert state_of(api.app).usage.flush(timeout=10)


def test_every_service_route_call_is_an_event(api, db: psycopg.Connection) -> None:
    api.enable("north", "base", "things")
    before = len(_events(db, "north", "api_call"))
    for _ in range(3):
        assert api.client.get("/api/v1/sites/north/things/things", headers=api.north).status_code == 200
    assert api.client.get("/api/v1/sites/north/things/things?limit=2", headers=api.admin).status_code == 200
    assert api.client.get("/api/v1/sites/north/alerts", headers=api.north).status_code == 200  # not a service route
    _flush(api)
    calls = _events(db, "north", "api_call")[before:]
    assert [(s, svc, who) for s, svc, who, _, _ in calls] == [("north", "things", "north manager")] * 3 + [
        ("north", "things", "bootstrap-admin")]
    assert calls[0][4] == {"method": "GET", "path": "/api/v1/sites/north/things/things"}


def test_refused_calls_are_not_usage(api, db: psycopg.Connection) -> None:
    api.enable("south", "base", enabled=True)
    before = len(_events(db, "south"))
    assert api.client.get("/api/v1/sites/south/things/things", headers=api.north).status_code == 404  # other site
    assert api.client.get("/api/v1/sites/south/things/things", headers=api.both).status_code == 404  # not enabled
    _flush(api)
    assert len(_events(db, "south")) == before


def test_alert_acknowledgement_is_an_event_once(api, db: psycopg.Connection) -> None:
    alert_id = db.execute("INSERT INTO service_alerts (site_id, service, key, level, message, published_at)"
                          " VALUES ('north', 'things', 'ack-me', 'warning', 'too fast', now()) RETURNING id"
                          ).fetchone()[0]
    for _ in range(2):
        response = api.client.post(f"/api/v1/sites/north/alerts/{alert_id}/ack", headers=api.north)
        assert response.status_code == 200 and response.json()["acknowledged_by"] == "north manager"
    _flush(api)
    acks = _events(db, "north", "alert_ack")
    assert acks == [("north", "things", "north manager", "alert_ack", {"alert_id": alert_id})]


def test_card_views_through_the_helper(api, db: psycopg.Connection) -> None:
    """What the site view does for each card it renders."""
    scope = {"type": "http", "app": api.app, "method": "GET", "path": "/api/v1/sites/north/view", "headers": []}
    record_card_views(Request(scope), "north", ["base", "things"], "north manager")
    _flush(api)
    views = _events(db, "north", "card_view")
    assert [(svc, who) for _, svc, who, _, _ in views] == [("base", "north manager"), ("things", "north manager")]


def test_access_log_shows_who_did_what_newest_first(api) -> None:
    api.enable("north", "base", "things")
    api.client.get("/api/v1/sites/north/things/things", headers=api.north)
    _flush(api)
    log = api.client.get("/api/v1/sites/north/access-log", params={"limit": 2}, headers=api.north)
    assert log.status_code == 200, log.text
    page = log.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    newest = page["items"][0]
    assert newest["principal"] == "north manager" and newest["action"] == "api_call"
    assert newest["service"] == "things"
    seen = page["items"]
    cursor = page["next_cursor"]
    while cursor:
        page = api.client.get("/api/v1/sites/north/access-log", params={"limit": 2, "cursor": cursor},
                              headers=api.north).json()
        seen += page["items"]
        cursor = page["next_cursor"]
    assert [e["at"] for e in seen] == sorted((e["at"] for e in seen), reverse=True)
    assert len({e["id"] for e in seen}) == len(seen)
    acks = api.client.get("/api/v1/sites/north/access-log", params={"action": "alert_ack"}, headers=api.north)
    assert {e["action"] for e in acks.json()["items"]} == {"alert_ack"}
    assert api.client.get("/api/v1/sites/south/access-log", headers=api.north).status_code == 404


def test_data_use_lists_fields_read_and_tables_written(api) -> None:
    api.enable("north", "base", "things")
    response = api.client.get("/api/v1/sites/north/data-use", headers=api.north)
    assert response.status_code == 200
    items = {i["service"]: i for i in response.json()["items"]}
    things = items["things"]
    assert things["telemetry_fields_read"] == ["speed_kmh"]
    assert things["tables_written"] == ["things.counts"]
    assert things["reads_outputs_of"] == ["base"]
    assert things["enabled_by"] == "bootstrap-admin" and things["enabled_at"]
    assert "top" not in items  # never switched on here


# --- the recorder itself ------------------------------------------------------------------------


def _count(url: str, site: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM usage_events WHERE site_id = %s", (site,)).fetchone()[0]


def test_close_writes_everything_recorded(database_url: str) -> None:
    recorder = UsageRecorder(database_url, batch_size=300, flush_interval=5.0)
    recorder.start()
    started = time.perf_counter()
    for i in range(5000):
        recorder.record("close-test", "things", f"user-{i % 7}", "api_call", {"i": i})
    per_call = (time.perf_counter() - started) / 5000
    assert per_call < 0.0005  # the request path only queues
    assert recorder.close(timeout=20)
    assert _count(database_url, "close-test") == 5000
    stats = recorder.stats()
    assert stats["written"] == 5000 and stats["dropped"] == 0 and stats["batches"] >= 17


def test_a_full_queue_drops_and_counts_instead_of_blocking(database_url: str) -> None:
    recorder = UsageRecorder(database_url, max_queue=10)  # not started: nothing drains the queue
    for _ in range(15):
        recorder.record("full-test", None, "u", "export")
    assert recorder.stats()["dropped"] == 5 and recorder.stats()["queued"] == 10


def test_the_database_being_away_delays_events_but_loses_none(database_url: str) -> None:
    bad = UsageRecorder("postgresql://nobody@127.0.0.1:1/none", flush_interval=0.05)
    bad.start()
    bad.record("away-test", None, "u", "export")
    time.sleep(0.3)
    assert bad.stats()["written"] == 0 and bad.stats()["recorded"] == 1
    bad.database_url = database_url  # the database comes back
    assert bad.flush(timeout=15)
    assert bad.close()
    assert _count(database_url, "away-test") == 1


def test_at_shutdown_a_database_still_away_is_given_up_once_the_back_off_is_at_its_cap(monkeypatch) -> None:
    monkeypatch.setattr("registry.usage._RETRY_MAX_S", 0.5)  # waits 0.2 s, 0.4 s, then gives up (5 s in use)
    bad = UsageRecorder("postgresql://nobody@127.0.0.1:1/none", flush_interval=0.05)
    bad.start()
    bad.record("gone-test", None, "u", "export")
    started = time.monotonic()
    assert bad.close(timeout=10)
    assert bad.stats()["failed"] == 1 and bad.stats()["written"] == 0
    assert 0.5 <= time.monotonic() - started < 5


class _Pinged(Service):
    name = "pinged"

    def process(self, batch: Any, state: dict, settings: BaseModel) -> tuple[Outputs, dict]:
        return Outputs(), state

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/ping")
        def ping() -> dict[str, str]:
            return {"pong": "yes"}

        return router


@pytest.mark.parametrize("track", [True, False])
def test_tracking_can_be_switched_off(fresh_database_url: str, track: bool) -> None:
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (site_id, name, config) VALUES ('bench', 'Bench', '{}')")
        set_enablement(conn, {"pinged": _Pinged()}, "bench", "pinged", enabled=True)
    app = create_app(fresh_database_url, "mqtt://127.0.0.1:1", services={"pinged": _Pinged()},
                     settings=load_settings(admin_token=ADMIN_TOKEN), track_usage=track)
    with TestClient(app) as client:
        for _ in range(20):
            response = client.get("/api/v1/sites/bench/pinged/ping", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert response.status_code == 200
    assert _count(fresh_database_url, "bench") == (20 if track else 0)  # the lifespan's close wrote them all
