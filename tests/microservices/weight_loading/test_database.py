"""Through the real runner and API on PostgreSQL: arrival order does not matter; cycles, KPIs, compliance, card."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient

from evaluation.pipeline import arrival_orders, run_in_chunks
from evaluation.stored import catch_up_fully, insert_telemetry
from microservices.cards import load_card_context
from microservices.runner import ServiceHost
from microservices.weight_loading import WeightLoading
from registry.api.app import create_app
from sitepulse.migrations import MigrationSource, upgrade
from sitepulse.settings import load_settings
from sitepulse.sites import save_site

ADMIN_TOKEN = "weight-loading-admin-token-for-tests-0123456789"
MIGRATIONS = MigrationSource("weight-loading", Path(WeightLoading.migrations), 100)
CYCLES = ("SELECT machine_id, load_start, loaded_at, haul_start, dump_start, dumped_at, payload_kg, band, passes, "
          "fuel_used_l, fuel_return_l, load_lat, dump_lon FROM weight_loading.cycles WHERE site_id = %s "
          "ORDER BY machine_id, loaded_at")
ACTIVITY = ("SELECT machine_id, hour, engine_hours, fuel_l, samples FROM weight_loading.activity "
            "WHERE site_id = %s ORDER BY machine_id, hour")
ALERTS = "SELECT key, level, at, machine_id FROM service_alerts WHERE site_id = %s ORDER BY key"


@pytest.fixture(scope="module")
def db_url(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        upgrade(conn, [MIGRATIONS])
    return database_url


def enable(conn: psycopg.Connection, site_id: str, service: str) -> None:
    conn.execute(
        "INSERT INTO service_enablement (site_id, service, enabled, enabled_at) VALUES (%s, %s, true, now()) "
        "ON CONFLICT (site_id, service) DO UPDATE SET enabled = true", (site_id, service))


@pytest.mark.slow
def test_results_do_not_depend_on_arrival_order(db_url: str, simulate_run) -> None:
    telemetry, _, site, machines = simulate_run(1, 2.0)
    telemetry = telemetry[telemetry["ts"] < telemetry["ts"].min() + pd.Timedelta(minutes=45)]
    orders = arrival_orders(telemetry, window="5min", shuffled_parts=7, duplicated_parts=4, seeds=(11, 5, 2))
    host = ServiceHost(WeightLoading())
    with psycopg.connect(db_url, autocommit=True) as conn:
        for site_id, chunks in orders.items():
            save_site(conn, site_id, site)
            enable(conn, site_id, "weight-loading")
            for chunk in chunks:
                insert_telemetry(conn, chunk.assign(site_id=site_id))
                catch_up_fully(conn, host, [site_id])
        tables = {site_id: [conn.execute(q, (site_id,)).fetchall() for q in (CYCLES, ACTIVITY)]
                  for site_id in orders}
        replays = dict(conn.execute("SELECT site_id, replays FROM service_checkpoints "
                                    "WHERE service = 'weight-loading'").fetchall())
    expected = run_in_chunks(WeightLoading(), telemetry, site=site, machines=machines, chunk="5min")["cycles"]
    assert len(tables["in-order"][0]) == len(expected) >= 15
    assert tables["shuffled"] == tables["in-order"]
    assert tables["duplicated"] == tables["in-order"]
    assert replays["in-order"] == 0 and replays["shuffled"] > 0 and replays["duplicated"] > 0


@pytest.fixture(scope="module")
def api(db_url: str, mqtt_broker: Any, simulate_run) -> Iterator[TestClient]:
    """The API with weight-loading on site 'quarry', fed one simulated hour with frequent overloads."""
    telemetry, _, site, _ = simulate_run(7, 1.0, overloads=True)
    with psycopg.connect(db_url, autocommit=True) as conn:
        save_site(conn, "quarry", site)
        enable(conn, "quarry", "weight-loading")
        insert_telemetry(conn, telemetry.assign(site_id="quarry"))
        catch_up_fully(conn, ServiceHost(WeightLoading()), ["quarry"])
    app = create_app(db_url, mqtt_broker.url, services={"weight-loading": WeightLoading()},
                     settings=load_settings(admin_token=ADMIN_TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        yield client


BASE = "/api/v1/sites/quarry/weight-loading"


def test_cycles_are_paginated_in_time_order_with_the_contract_fields(api: TestClient, db_url: str) -> None:
    first = api.get(f"{BASE}/cycles", params={"limit": 7})
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["items"]) == 7 and body["next_cursor"]
    item = body["items"][0]
    for field in ("machine_id", "loaded_at", "dumped_at", "payload_kg", "rated_payload_kg", "load_zone",
                  "dump_zone", "band"):
        assert field in item
    assert item["load_zone"] is None  # positioning is not enabled for the site
    seen, cursor = [], None
    while True:
        page = api.get(f"{BASE}/cycles", params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    with psycopg.connect(db_url) as conn:
        total = conn.execute("SELECT count(*) FROM weight_loading.cycles WHERE site_id = 'quarry'").fetchone()[0]
    assert len(seen) == total
    keys = [(row["loaded_at"], row["machine_id"]) for row in seen]
    assert keys == sorted(keys) and len(set(keys)) == total
    one = api.get(f"{BASE}/cycles", params={"machine_id": "HX-01", "from": seen[3]["loaded_at"]}).json()["items"]
    assert one and {r["machine_id"] for r in one} == {"HX-01"} and all(r["loaded_at"] >= seen[3]["loaded_at"]
                                                                       for r in one)
    assert api.get(f"{BASE}/cycles", params={"limit": 1001}).status_code == 422
    assert api.get(f"{BASE}/cycles", params={"cursor": "bm9wZQ"}).status_code == 400


def test_zones_are_resolved_when_positioning_is_enabled(api: TestClient, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        enable(conn, "quarry", "positioning")
        try:
            items = api.get(f"{BASE}/cycles", params={"limit": 50}).json()["items"]
        finally:
            conn.execute("UPDATE service_enablement SET enabled = false WHERE service = 'positioning'")
    assert {i["load_zone"] for i in items} <= {"load-a", "load-b"} and {i["dump_zone"] for i in items} <= {
        "crusher", "spoil"}
    assert {i["load_zone"] for i in items} == {"load-a", "load-b"}


@pytest.mark.parametrize("group", ["site", "machine", "shift"])
def test_kpis_per_group(api: TestClient, group: str) -> None:
    response = api.get(f"{BASE}/kpis", params={"group": group, "from": "2026-01-01T00:00:00Z",
                                               "to": "2026-02-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items
    for item in items:
        assert item["loads"] > 0 and item["tonnes"] > 0
        assert item["tonnes_per_operating_hour"] is None or item["tonnes_per_operating_hour"] > 0
        assert 0 <= item["under_share"] <= 1 and 0 <= item["over_110_share"] <= 1
        assert item["fuel_per_tonne_l"] > 0 and item["fuel_saved_if_at_target_l"] >= 0
    if group == "site":
        assert items[0]["tonnes_per_operating_hour"] > 0 and items[0]["over_120_share"] > 0
    if group == "shift":
        assert {i["shift"] for i in items} == {"day"} and items[0]["shift_date"] == "2026-01-05"
    assert api.get(f"{BASE}/kpis", params={"group": "crew"}).status_code == 422


def test_compliance_reports_each_rule_with_its_numbers(api: TestClient) -> None:
    body = api.get(f"{BASE}/compliance", params={"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}).json()
    site = body["site"]
    assert site["rules"]["none_over_120"]["count"] > 0 and not site["rules"]["none_over_120"]["pass"]
    assert not site["compliant"]
    assert {m["machine_id"] for m in body["machines"]} >= {"HX-01", "RT-01"}
    for machine in body["machines"]:
        assert machine["compliant"] == all(r["pass"] for r in machine["rules"].values())
    assert body["shifts"][0]["shift"] == "day"
    assert api.get(f"{BASE}/compliance", params={"from": "2026-01-02T00:00:00"}).status_code == 400


def test_card_and_alerts(api: TestClient, db_url: str) -> None:
    from microservices.weight_loading.routes import compliance_table, load_cycles, site_card
    from microservices.weight_loading.settings import WeightLoadingSettings

    with psycopg.connect(db_url) as conn:
        def read(query: str, params: Any = None) -> pd.DataFrame:
            cur = conn.execute(query, params)
            return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description or []])

        now = pd.Timestamp("2026-01-05T07:10:00Z")
        card = site_card(load_card_context(conn, "quarry", "weight-loading", now=now), WeightLoadingSettings())
        cycles = load_cycles(read, "quarry", pd.Timestamp("2026-01-05T00:00:00Z"), now + pd.Timedelta(seconds=1))
        alerts = conn.execute(ALERTS, ("quarry",)).fetchall()
        ends = conn.execute(  # through the real runner: each overload's end is its cycle's dump (the SDK's clear)
            "SELECT (a.data ->> 'ended_at')::timestamptz, c.dumped_at, a.data ->> 'end_reason' FROM service_alerts a"
            " JOIN weight_loading.cycles c ON c.site_id = a.site_id AND c.machine_id = a.machine_id"
            " AND c.load_start = (a.data ->> 'load_start')::timestamptz WHERE a.site_id = 'quarry'").fetchall()
    assert ends and all(ended == dumped and "dumped the load at" in reason for ended, dumped, reason in ends)
    # the card aggregates in SQL: it must say what the frame-based policy says about the same cycles
    by_machine = {r["machine_id"]: r for r in compliance_table(cycles, ["machine_id"], WeightLoadingSettings())}
    assert card.metrics[1]["value"] == len(cycles)
    assert card.metrics[0]["value"] == round(cycles["payload_kg"].sum() / 1000, 1)
    for worst in card.data["worst_offenders"]:
        rules = by_machine[worst["machine_id"]]["rules"]
        assert worst["over_120"] == rules["none_over_120"]["count"]
        assert worst["share_over_110"] == rules["share_over_110"]["value"]
        assert worst["mean_payload_pct"] == rules["mean_not_above_rated"]["value_pct"]
    assert len(card.data["worst_offenders"]) == min(5, sum(not r["compliant"] for r in by_machine.values()))
    pct = 100 * cycles["payload_kg"] / cycles["rated_payload_kg"]
    assert card.data["payload_histogram"]["counts"] == np.histogram(pct, bins=list(range(60, 145, 5)))[0].tolist()
    assert card.title == "Weight loading" and card.link == "cycles"
    assert card.metrics[0]["value"] > 0 and card.metrics[1]["value"] > 0
    assert card.metrics[2]["value"] == "not compliant"
    assert card.data["worst_offenders"] and sum(card.data["payload_histogram"]["counts"]) > 0
    assert alerts and all(level == "critical" and key.endswith(":over120") for key, level, _, _ in alerts)


def test_declaration_and_kpi_daily_sql(api: TestClient, db_url: str) -> None:
    from microservices.sdk import validate_declaration

    service = WeightLoading()
    validate_declaration(service)
    assert service.describe()["settings"]["properties"]["over_120_fraction"]["default"] == 1.2
    params = {"site_id": "quarry", "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    with psycopg.connect(db_url) as conn:
        values = {k.name: conn.execute(k.daily_sql, params).fetchall() for k in service.kpis}
    for name, rows in values.items():
        assert rows and rows[0][0].isoformat() == "2026-01-05", name
    assert values["tonnes_per_operating_hour"][0][1] > 0
    assert 0 < values["overload_share"][0][1] < 1
    assert values["fuel_per_tonne"][0][1] > 0
    assert values["fuel_saved_if_at_target"][0][1] >= 0 and values["trips_saved_if_at_target"][0][1] is not None
