"""The service's routes and card through the real app, database and runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient

from evaluation.stored import all_pages, catch_up_fully, insert_telemetry
from microservices.cards import load_card_context
from microservices.positioning import Positioning
from microservices.runner import ServiceHost
from microservices.sdk import Card
from registry.api.app import create_app
from simulators.site import load_site as load_demo_site
from sitepulse.migrations import MigrationSource, upgrade
from sitepulse.settings import load_settings
from sitepulse.sites import save_site

ADMIN_TOKEN = "bootstrap-admin-token-for-positioning-tests-0123"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE = "/api/v1/sites/demo/positioning"


@pytest.fixture(scope="module")
def client(database_url: str, mqtt_broker: Any, simulated) -> Iterator[TestClient]:
    """The app with the positioning service enabled on 'demo' and 15 minutes of telemetry processed."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        upgrade(conn, [MigrationSource("positioning", Path(Positioning.migrations), 100)])
    service = Positioning()
    app = create_app(database_url, mqtt_broker.url, services={"positioning": service},
                     settings=load_settings(admin_token=ADMIN_TOKEN))
    site_yaml = (Path(__file__).parents[3] / "simulators" / "sites" / "demo_quarry.yaml").read_text()
    with TestClient(app) as client:
        response = client.put("/api/v1/sites/demo", content=site_yaml,
                              headers={**ADMIN, "Content-Type": "application/yaml"})
        assert response.status_code in (200, 201), response.text
        response = client.put("/api/v1/sites/demo/services/positioning", json={"enabled": True}, headers=ADMIN)
        assert response.status_code == 200, response.text
        telemetry = simulated.telemetry
        with psycopg.connect(database_url, autocommit=True) as conn:
            insert_telemetry(conn, telemetry[telemetry["ts"] < telemetry["ts"].min() + pd.Timedelta(minutes=25)])
            catch_up_fully(conn, ServiceHost(service), ["demo"])
        yield client


def _all(client: TestClient, path: str, **params: Any) -> list[dict]:
    return all_pages(client, path, ADMIN, **params)


def test_live_positions(client: TestClient, simulated) -> None:
    items = _all(client, f"{BASE}/positions", limit=4)
    assert [i["machine_id"] for i in items] == sorted(m.id for m in simulated.site.machines)
    for item in items:
        assert item["state"] in {"moving", "idle", "off"}
        assert 59.28 < item["lat"] < 59.32 and 18.07 < item["lon"] < 18.13
        assert {"kind", "ts", "speed_kmh", "heading", "zone", "raw_lat", "raw_lon"} <= item.keys()
    kinds = {i["machine_id"]: i["kind"] for i in items}
    assert kinds["EX-01"] == "excavator" and kinds["HX-01"] == "hauler"


def test_zone_events_follow_the_contract(client: TestClient) -> None:
    everything = _all(client, f"{BASE}/zone-events", limit=1000)
    paged = _all(client, f"{BASE}/zone-events", limit=7)
    assert paged == everything and len(everything) > 20
    keys = [(e["entered_at"], e["machine_id"], e["zone"]) for e in everything]
    assert keys == sorted(keys)
    assert {"machine_id", "zone", "zone_type", "entered_at", "left_at", "dwell_s"} <= everything[0].keys()
    assert any(e["left_at"] is None for e in everything)  # loaders are still in their load zone
    middle = everything[len(everything) // 2]["entered_at"]
    later = _all(client, f"{BASE}/zone-events", **{"from": middle})
    assert later == [e for e in everything if e["entered_at"] >= middle]
    earlier = _all(client, f"{BASE}/zone-events", to=middle)
    assert earlier == [e for e in everything if e["entered_at"] < middle]
    assert client.get(f"{BASE}/zone-events", params={"limit": 1001}, headers=ADMIN).status_code == 422
    assert client.get(f"{BASE}/zone-events", params={"cursor": "bogus"}, headers=ADMIN).status_code == 400
    junction = _all(client, f"{BASE}/zone-events", zone="junction")
    assert junction and {e["zone_type"] for e in junction} == {"road"}


def test_machine_summaries_per_shift(client: TestClient) -> None:
    items = _all(client, f"{BASE}/machines", limit=5)
    assert len(items) == 11 and {i["shift"] for i in items} == {"day"}
    hauler = next(i for i in items if i["machine_id"] == "HX-01")
    assert hauler["distance_m"] > 1000
    assert hauler["moving_s"] + hauler["idle_s"] + hauler["off_s"] > 20 * 60
    assert set(hauler["time_per_zone_type_s"]) == {"load", "dump", "road", "parking", "restricted", "workshop",
                                                  "no_zone"}
    assert sum(hauler["time_per_zone_type_s"].values()) == pytest.approx(
        hauler["moving_s"] + hauler["idle_s"] + hauler["off_s"], abs=1)
    excavator = next(i for i in items if i["machine_id"] == "EX-01")
    assert excavator["distance_m"] == 0 and excavator["time_per_zone_type_s"]["load"] > 20 * 60


def test_events_heatmap_and_card(client: TestClient, database_url: str) -> None:
    events = _all(client, f"{BASE}/events")
    kinds = {e["kind"] for e in events}
    assert "restricted_entry" in kinds and "speeding" in kinds
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    heat = client.get(f"{BASE}/heatmap", params={"cell_m": 50}, headers=ADMIN).json()
    assert heat["cell_m"] == 50 and heat["origin"]["lat"] == pytest.approx(59.3, abs=0.01)
    assert sum(c["positions"] for c in heat["cells"]) > 1000
    assert all(59.28 < c["lat"] < 59.32 for c in heat["cells"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        card = Positioning().card(load_card_context(conn, "demo", "positioning"), Positioning.Settings())
    assert card.title == "Positioning" and card.link == "positions"
    assert sum(m["value"] for m in card.metrics) == 11
    assert {z["id"] for z in card.data["zones"]} >= {"load-a", "crusher", "blast-area"}
    assert len(card.data["zones"][0]["polygon"]) >= 3
    machine = card.data["machines"][0]
    assert {"machine_id", "kind", "lat", "lon", "heading", "speed_kmh", "state", "zone"} <= machine.keys()



def test_card_follows_a_replaced_site_file(client: TestClient, database_url: str) -> None:
    """The card draws the site file it is handed: replacing the file shows on the next card."""
    site = load_demo_site()
    with psycopg.connect(database_url, autocommit=True) as conn:
        def card() -> Card | None:
            return Positioning().card(load_card_context(conn, "demo-files", "positioning"), Positioning.Settings())

        save_site(conn, "demo-files", site)
        before = card()
        again = card()
        save_site(conn, "demo-files", site.model_copy(update={"zones": site.zones[:2]}))
        after = card()
    assert before.data == again.data and len(before.data["zones"]) == len(site.zones) > 2
    assert before.data["machines"] == []
    assert [z["id"] for z in after.data["zones"]] == [z.id for z in site.zones[:2]]
    assert before.data["zones"][:2] == after.data["zones"]

def test_kpi_queries_return_one_value_per_day(client: TestClient, database_url: str) -> None:
    window = {"site_id": "demo", "start": pd.Timestamp("2026-01-01T00:00Z"), "end": pd.Timestamp("2026-02-01T00:00Z")}
    with psycopg.connect(database_url, autocommit=True) as conn:
        values = {kpi.name: conn.execute(kpi.daily_sql, window).fetchall() for kpi in Positioning.kpis}
    assert set(values) == {"idle_share", "restricted_entries_per_day", "speeding_per_100km"}
    for name, rows in values.items():
        assert len(rows) == 1 and str(rows[0][0]) == "2026-01-05", name
    assert 0 < float(values["idle_share"][0][1]) < 100
    assert float(values["restricted_entries_per_day"][0][1]) >= 1
    assert float(values["speeding_per_100km"][0][1]) > 0


def test_zone_answers_carry_the_drawn_name(client: TestClient) -> None:
    names = {z.id: z.name for z in load_demo_site().zones}
    events = _all(client, f"{BASE}/zone-events", limit=1000)
    assert events and all(e["zone_name"] == names[e["zone"]] for e in events)
    assert any(e["zone_name"] == "Central haul-road junction" for e in events)
