"""The usage report a provider prices from: its counts match the events, per customer, site and service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ingest.partitions import Partitions
from microservices.sdk import Kpi, Outputs, Service
from registry.api.app import create_app
from registry.api.state import state_of
from registry.enablement import set_enablement
from registry.reports import machines_covered
from registry.tokens import create_token
from sitepulse.db import has_timescaledb
from sitepulse.settings import load_settings

ADMIN_TOKEN = "bootstrap-admin-token-for-usage-report-0123456789"
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)


class Loads(Service):
    name = "loads"
    tables = ("loads.tonnes",)
    volume = Kpi("tonnes", "tonnes loaded", "t", True,
                 "SELECT day, sum(t) FROM loads.tonnes WHERE site_id = %(site_id)s AND day >= %(start)s::date"
                 " AND day < %(end)s::date GROUP BY day")

    def process(self, batch: Any, state: dict, settings: BaseModel) -> tuple[Outputs, dict]:
        return Outputs(), state


class Speed(Loads):
    name = "speed"
    tables = ()
    volume = None


# (site, service, principal, action, day of January, hour)
EVENTS = [
    ("quarry-a", "loads", "anna", "api_call", 3, 8), ("quarry-a", "loads", "anna", "api_call", 3, 9),
    ("quarry-a", "loads", "bert", "card_view", 4, 8), ("quarry-a", "loads", "anna", "export", 10, 8),
    ("quarry-a", "loads", "bert", "alert_ack", 12, 8), ("quarry-a", "speed", "anna", "card_view", 12, 8),
    ("quarry-b", "loads", "cleo", "card_view", 20, 8), ("quarry-b", "loads", "cleo", "card_view", 21, 8),
    ("quarry-a", "loads", "anna", "api_call", 31, 23),  # inside: the period ends 1 February 00:00
]
OUTSIDE = [("quarry-a", "loads", "anna", "api_call", START - timedelta(seconds=1)),
           ("quarry-a", "loads", "anna", "api_call", END)]


@pytest.fixture(scope="module")
def client(database_url: str) -> Iterator[TestClient]:
    services = {"loads": Loads(), "speed": Speed()}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA loads")
        conn.execute("CREATE TABLE loads.tonnes (site_id text, day date, t float8)")
        for site, customer in (("quarry-a", "Acme Aggregates"), ("quarry-b", "Acme Aggregates"),
                               ("quarry-c", "Borealis Stone")):
            conn.execute("INSERT INTO sites (site_id, name, config) VALUES (%s, %s, '{}')", (site, site))
            conn.execute("INSERT INTO site_customers (site_id, customer) VALUES (%s, %s)", (site, customer))
        for site in ("quarry-a", "quarry-b", "quarry-c"):
            set_enablement(conn, services, site, "loads", enabled=True)
            conn.execute("UPDATE service_enablement SET enabled_at = %s WHERE site_id = %s",
                         (START - timedelta(days=5), site))
        set_enablement(conn, services, "quarry-a", "speed", enabled=True)
        conn.execute("UPDATE service_enablement SET enabled_at = %s WHERE service = 'speed'", (START,))
        for site, service, who, action, day, hour in EVENTS:
            at = datetime(2026, 1, day, hour, tzinfo=UTC)
            conn.execute("INSERT INTO usage_events (at, site_id, service, principal, action) VALUES (%s, %s, %s, %s,"
                         " %s)", (at, site, service, who, action))
        for site, service, who, action, at in OUTSIDE:
            conn.execute("INSERT INTO usage_events (at, site_id, service, principal, action) VALUES (%s, %s, %s, %s,"
                         " %s)", (at, site, service, who, action))
        for day in range(1, 32):
            conn.execute("INSERT INTO loads.tonnes VALUES ('quarry-a', %s, 100.0)", (datetime(2026, 1, day).date(),))
        conn.execute("INSERT INTO loads.tonnes VALUES ('quarry-a', '2026-02-01', 999.0)")  # outside
        conn.execute("INSERT INTO service_alerts (site_id, service, key, level, message, published_at,"
                     " acknowledged_at) VALUES ('quarry-a', 'loads', 'a1', 'warning', 'm', %s, %s),"
                     " ('quarry-a', 'loads', 'a2', 'warning', 'm', %s, NULL)",
                     (START + timedelta(days=11), START + timedelta(days=11, hours=1), START + timedelta(days=12)))
        _telemetry(conn)
        site_token = create_token(conn, "acme", ["quarry-a"]).token
    app = create_app(database_url, "mqtt://127.0.0.1:1", services=services,
                     settings=load_settings(admin_token=ADMIN_TOKEN))
    with TestClient(app) as test_client:
        test_client.site_token = site_token  # type: ignore[attr-defined]
        yield test_client


def _telemetry(conn: psycopg.Connection) -> None:
    """Three machines report on quarry-a in January, one only in December; quarry-b has none."""
    partitions = Partitions(enabled=not has_timescaledb(conn))
    partitions.load(conn)
    partitions.ensure(conn, datetime(2025, 12, 1, tzinfo=UTC), END)
    for machine, ts in (("H1", "2026-01-05T10:00Z"), ("H1", "2026-01-06T10:00Z"), ("H2", "2026-01-20T10:00Z"),
                        ("L1", "2026-01-31T23:59Z"), ("OLD", "2025-12-20T10:00Z")):
        conn.execute("INSERT INTO telemetry (site_id, machine_id, ts, seq) VALUES ('quarry-a', %s, %s, 1)",
                     (machine, ts))


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PERIOD = {"from": START.isoformat(), "to": END.isoformat()}


def test_counts_match_the_events(client: TestClient) -> None:
    response = client.get("/api/v1/usage", params=PERIOD, headers=ADMIN)
    assert response.status_code == 200, response.text
    items = {(i["site_id"], i["service"]): i for i in response.json()["items"]}
    assert set(items) == {("quarry-a", "loads"), ("quarry-a", "speed"), ("quarry-b", "loads"), ("quarry-c", "loads")}
    a = items[("quarry-a", "loads")]
    expected = [e for e in EVENTS if e[:2] == ("quarry-a", "loads")]
    assert a["calls"] == sum(e[3] == "api_call" for e in expected) == 3
    assert a["card_views"] == 1 and a["exports"] == 1 and a["alert_acks"] == 1
    assert a["active_days"] == len({e[4] for e in expected if e[3] != "export"}) == 4
    assert a["distinct_users"] == 2
    assert (a["alerts_delivered"], a["alerts_acknowledged"]) == (2, 1)
    assert a["machines_covered"] == 3
    assert a["volume"] == {"name": "tonnes", "value": 3100.0, "unit": "t"}
    assert a["customer"] == "Acme Aggregates"
    assert items[("quarry-a", "speed")]["volume"] is None
    assert items[("quarry-b", "loads")]["card_views"] == 2 and items[("quarry-b", "loads")]["machines_covered"] == 0
    quiet = items[("quarry-c", "loads")]
    assert (quiet["calls"], quiet["active_days"], quiet["customer"]) == (0, 0, "Borealis Stone")  # on, unused
    totals = {t["customer"]: t for t in response.json()["by_customer"]}
    assert totals["Acme Aggregates"]["sites"] == ["quarry-a", "quarry-b"]
    assert totals["Acme Aggregates"]["calls"] == 3 and totals["Acme Aggregates"]["volume"] == {"t": 3100.0}


def test_csv_and_period_checks(client: TestClient) -> None:
    csv = client.get("/api/v1/usage", params={**PERIOD, "format": "csv", "site_id": "quarry-a"}, headers=ADMIN)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("customer,site_id,service,from,to,active_days")
    assert lines[1].startswith("Acme Aggregates,quarry-a,loads,2026-01-01T00:00:00Z,2026-02-01T00:00:00Z,4,2,3,1,1,1")
    assert lines[1].endswith(",2,1,3,tonnes,3100,t")
    backwards = client.get("/api/v1/usage", params={"from": END.isoformat(), "to": START.isoformat()}, headers=ADMIN)
    assert backwards.status_code == 400 and backwards.json() == {"detail": "to must be after from"}
    site = client.get("/api/v1/usage", params=PERIOD, headers={"Authorization": f"Bearer {client.site_token}"})
    assert site.status_code == 403


def test_report_downloads_are_exports_in_the_access_log(client: TestClient) -> None:
    client.get("/api/v1/usage", params=PERIOD, headers=ADMIN)
    assert state_of(client.app).usage.flush()
    log = client.get("/api/v1/sites/quarry-a/access-log", params={"action": "export"},
                     headers={"Authorization": f"Bearer {client.site_token}"}).json()["items"]
    newest = log[0]
    assert newest["principal"] == "bootstrap-admin" and newest["detail"]["what"] == "usage report"


def test_machines_covered_counts_each_machine_once(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert machines_covered(conn, "quarry-a", START, END) == 3
        assert machines_covered(conn, "quarry-a", START - timedelta(days=30), END) == 4
        assert machines_covered(conn, "quarry-a", datetime(2026, 1, 10, tzinfo=UTC), END) == 2
        assert machines_covered(conn, "nowhere", START, END) == 0
