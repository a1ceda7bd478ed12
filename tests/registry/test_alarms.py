"""Alarms: acknowledge with a comment, auto-clear when the condition ends, notification and escalation under a
site's rules (a real webhook receiver), history per machine and zone, every state change audited."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from microservices.alerts import store_alerts
from microservices.sdk import Outputs
from registry.alarms import supervise
from registry.webhooks import WebhookPolicy, WebhookSender
from sitepulse.embedded.ports import free_port

LOOPBACK = WebhookSender(WebhookPolicy({"127.0.0.1"}))  # the receivers here, approved as the app's settings do


def _raise(conn: psycopg.Connection, site: str, key: str, *, level: str = "warning", machine: str | None = "H1",
           service: str = "positioning", data: dict | None = None, ago_s: float = 0) -> int:
    """An alert as a service stores it (microservices/alerts.py), raised ``ago_s`` seconds ago."""
    return conn.execute(
        "INSERT INTO service_alerts (site_id, service, key, level, machine_id, message, data, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, now() - make_interval(secs => %s)) RETURNING id",
        (site, service, key, level, machine, f"{key} on {site}", Jsonb(data or {}), ago_s)).fetchone()[0]


def _actions(conn: psycopg.Connection, alert_id: int) -> list[tuple[str, str, str | None]]:
    return [tuple(r) for r in conn.execute(
        "SELECT action, actor, comment FROM alarm_events WHERE alert_id = %s ORDER BY at, id", (alert_id,))]


@pytest.fixture(scope="module")
def conn(api, database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alarms", _Receiver.bodies
    finally:
        server.shutdown()


def test_acknowledge_with_comment_keeps_the_first_and_audits_everything(api, conn) -> None:
    alert_id = _raise(conn, "north", "ack-me", level="critical")
    first = api.client.post(f"/api/v1/sites/north/alerts/{alert_id}/ack", json={"comment": "driver called"},
                            headers=api.north)
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "acknowledged" and first.json()["ack_comment"] == "driver called"
    again = api.client.post(f"/api/v1/sites/north/alerts/{alert_id}/ack", json={"comment": "machine parked"},
                            headers=api.admin).json()
    assert again["acknowledged_by"] == "north manager" and again["ack_comment"] == "driver called"
    cleared = api.client.post(f"/api/v1/sites/north/alerts/{alert_id}/clear", json={"reason": "checked on site"},
                              headers=api.north)
    assert cleared.json()["state"] == "cleared" and cleared.json()["cleared_by"] == "north manager"
    twice = api.client.post(f"/api/v1/sites/north/alerts/{alert_id}/clear", json={"reason": "again"},
                            headers=api.north)
    assert twice.status_code == 409 and "already cleared" in twice.json()["detail"]
    history = api.client.get(f"/api/v1/sites/north/alerts/{alert_id}/history", headers=api.north).json()
    assert [(e["action"], e["actor"], e["comment"]) for e in history["items"]] == [
        ("raised", "positioning", None), ("acknowledged", "north manager", "driver called"),
        ("commented", "bootstrap-admin", "machine parked"), ("cleared", "north manager", "checked on site")]
    foreign = api.client.get(f"/api/v1/sites/south/alerts/{alert_id}/history", headers=api.both)
    assert foreign.status_code == 404


def _emit(conn: psycopg.Connection, site: str, service: str, outputs: Outputs) -> int:
    """What the runner does with a ``process`` call's alerts and ends (one transaction)."""
    with conn.transaction():
        return store_alerts(conn, site, service, outputs.alerts)


def test_auto_clear_when_the_condition_ends(api, conn) -> None:
    """Every service, built-in or plugin, clears its alarms through the SDK; nothing reads its tables."""
    now = datetime.now(UTC)
    entered = (now - timedelta(minutes=5)).replace(microsecond=0)
    raised = Outputs()
    raised.alert("restricted-entry:H1:blast", "H1 entered blast", level="critical", machine_id="H1",
                 data={"zone": "blast", "entered_at": entered.isoformat()})
    raised.alert("restricted-entry:H2:blast", "H2 entered blast", level="critical", machine_id="H2",
                 data={"zone": "blast", "entered_at": entered.isoformat()})
    raised.alert("speeding:H1", "H1 drove 48 km/h", machine_id="H1", data={"zone": "road-a"},
                 ended_at=now - timedelta(seconds=30))
    raised.alert("speeding:H3", "H3 drove 50 km/h", machine_id="H3", ended_at=now + timedelta(minutes=5))
    assert _emit(conn, "north", "positioning", raised) == 4
    plugin = Outputs()  # a plugin's alert, raised in one batch and ended in the next
    plugin.alert("idle:H4:2026-11-23", "H4 idles", machine_id="H4")
    plugin.alert("something-else", "never ends")
    assert _emit(conn, "north", "idle-time", plugin) == 2
    left = entered + timedelta(seconds=95)
    later = Outputs()
    later.clear("restricted-entry:H1:blast", left, f"H1 left blast at {left:%H:%M:%S} UTC")
    later.clear("restricted-entry:H9:blast", left, "never raised: changes nothing")
    assert _emit(conn, "north", "positioning", later) == 0
    idle_over = Outputs()
    idle_over.clear("idle:H4:2026-11-23", now - timedelta(seconds=5), "H4 moving again")
    _emit(conn, "north", "idle-time", idle_over)
    twice = Outputs()  # a replay ends the key again, later: the first end stands
    twice.clear("restricted-entry:H1:blast", now, "replayed")
    _emit(conn, "north", "positioning", twice)
    ids = dict(conn.execute("SELECT key, id FROM service_alerts WHERE site_id = 'north' AND service IN"
                            " ('positioning', 'idle-time')").fetchall())
    inside, still_inside = ids["restricted-entry:H1:blast"], ids["restricted-entry:H2:blast"]
    speeding_over, speeding_later = ids["speeding:H1"], ids["speeding:H3"]
    idle, no_condition = ids["idle:H4:2026-11-23"], ids["something-else"]

    report = supervise(conn, now, LOOPBACK)
    assert report is not None and report["cleared"] >= 3
    rows = dict(conn.execute("SELECT id, cleared_at FROM service_alerts WHERE id = ANY(%s)",
                             ([inside, still_inside, speeding_over, speeding_later, no_condition, idle],)).fetchall())
    assert rows[inside] == left and rows[speeding_over] is not None and rows[idle] == now - timedelta(seconds=5)
    assert rows[still_inside] is None and rows[speeding_later] is None and rows[no_condition] is None
    cleared = _actions(conn, inside)[-1]
    assert cleared[0] == "cleared" and cleared[1] == "auto-clear" and "H1 left blast at" in cleared[2]
    assert _actions(conn, idle)[-1] == ("cleared", "auto-clear", "H4 moving again")
    assert "condition over at" in _actions(conn, speeding_over)[-1][2]
    assert supervise(conn, now + timedelta(minutes=6), LOOPBACK)["cleared"] >= 1  # the later end, once it came
    assert conn.execute("SELECT cleared_at FROM service_alerts WHERE id = %s", (speeding_later,)).fetchone()[0]
    active = api.client.get("/api/v1/sites/north/alerts", params={"state": "active", "zone": "blast"},
                            headers=api.north).json()["items"]
    assert [a["id"] for a in active] == [still_inside]
    history = api.client.get("/api/v1/sites/north/alerts", params={"machine_id": "H1", "level": "critical"},
                             headers=api.north).json()["items"]
    assert inside in [a["id"] for a in history] and speeding_over not in [a["id"] for a in history]
    assert {a["state"] for a in history if a["id"] == inside} == {"cleared"}


def test_rules_notify_once_and_escalate_when_nobody_acknowledges(api, conn, webhook) -> None:
    url, received = webhook
    rule = api.client.post("/api/v1/sites/south/alarm-rules", headers=api.both, json={
        "name": "criticals to the supervisor", "min_level": "critical", "notify": "shift supervisor",
        "escalate_after_s": 60, "escalate_to": "site manager", "webhook_url": url})
    assert rule.status_code == 201, rule.text
    duplicate = api.client.post("/api/v1/sites/south/alarm-rules", headers=api.both, json={
        "name": "criticals to the supervisor", "notify": "x"})
    assert duplicate.status_code == 409
    half = api.client.post("/api/v1/sites/south/alarm-rules", headers=api.both, json={
        "name": "half", "notify": "x", "escalate_after_s": 60})
    assert half.status_code == 422
    assert api.client.get("/api/v1/sites/north/alarm-rules", headers=api.north).json()["items"] == []

    ignored = _raise(conn, "south", "minor", level="warning", machine="H2")
    unattended = _raise(conn, "south", "overload", level="critical", machine="H2", service="weight-loading")
    attended = _raise(conn, "south", "overload-2", level="critical", machine="H2", service="weight-loading")
    now = datetime.now(UTC)
    supervise(conn, now, LOOPBACK)
    assert sorted((b["kind"], b["alarm"]["id"], b["to"]) for b in received) == [
        ("notified", unattended, "shift supervisor"), ("notified", attended, "shift supervisor")]
    api.client.post(f"/api/v1/sites/south/alerts/{attended}/ack", headers=api.both)
    supervise(conn, now + timedelta(seconds=30), LOOPBACK)  # not yet due
    supervise(conn, now + timedelta(seconds=90), LOOPBACK)
    supervise(conn, now + timedelta(seconds=150), LOOPBACK)  # escalated once only
    escalations = [(b["alarm"]["id"], b["to"]) for b in received if b["kind"] == "escalated"]
    assert escalations == [(unattended, "site manager")]
    assert [a[0] for a in _actions(conn, unattended)] == ["raised", "notified", "escalated"]
    assert _actions(conn, ignored) == [("raised", "positioning", None)]
    level = conn.execute("SELECT escalation_level FROM service_alerts WHERE id = %s", (unattended,)).fetchone()[0]
    assert level == 1

    rule_id = rule.json()["id"]
    assert api.client.delete(f"/api/v1/sites/north/alarm-rules/{rule_id}", headers=api.north).status_code == 404
    assert api.client.delete(f"/api/v1/sites/south/alarm-rules/{rule_id}", headers=api.both).status_code == 204
    audited = conn.execute("SELECT action FROM usage_events WHERE site_id = 'south' AND action LIKE 'alarm_rule_%'"
                           " ORDER BY id").fetchall()
    assert [a for (a,) in audited] == ["alarm_rule_added", "alarm_rule_removed"]


def test_a_webhook_that_fails_is_recorded_not_raised(api, conn) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    created = api.client.post("/api/v1/sites/north/alarm-rules", headers=api.north, json={
        "name": "to a dead hook", "min_level": "info", "service": "dead-hook", "notify": "nobody",
        "webhook_url": dead})
    assert created.status_code == 201, created.text
    alert_id = _raise(conn, "north", "to-dead-hook", level="info", service="dead-hook")
    supervise(conn, datetime.now(UTC), LOOPBACK)
    detail = conn.execute("SELECT detail FROM alarm_events WHERE alert_id = %s AND action = 'notified'",
                          (alert_id,)).fetchone()[0]
    assert detail["delivered"] is False and detail["error"]
