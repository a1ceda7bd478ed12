"""The service's routes, card, KPIs and alerts through the real app, database, runner and broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient

from evaluation.stored import all_pages, catch_up_fully, insert_telemetry
from evaluation.traffic_awareness import LANE_OFFSET_M
from microservices.alerts import MqttPublisher
from microservices.cards import load_card_context
from microservices.positioning import Positioning
from microservices.runner import ServiceHost
from microservices.traffic_awareness import TrafficAwareness
from registry.api.app import create_app
from simulators.site import load_site as load_demo_site
from sitepulse.migrations import MigrationSource, upgrade
from sitepulse.settings import load_settings
from sitepulse.sites import save_site

ADMIN_TOKEN = "bootstrap-admin-token-for-traffic-tests-0123456"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SITE = "traffic-demo"
BASE = f"/api/v1/sites/{SITE}/traffic-awareness"
SOURCES = [MigrationSource("positioning", Path(Positioning.migrations), 100),
           MigrationSource("traffic-awareness", Path(TrafficAwareness.migrations), 110)]


@pytest.fixture(scope="module")
def alerts_seen(mqtt_broker: Any) -> Iterator[list[tuple[str, dict]]]:
    """Everything published on sites/+/alerts/traffic while the module runs."""
    seen: list[tuple[str, dict]] = []
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: (c.subscribe("sites/+/alerts/traffic", qos=1), ready.set())
    client.on_message = lambda _c, _u, msg: seen.append((msg.topic, orjson.loads(msg.payload)))
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    assert ready.wait(10)
    yield seen
    client.loop_stop()
    client.disconnect()


@pytest.fixture(scope="module")
def client(database_url: str, mqtt_broker: Any, traffic_run, alerts_seen) -> Iterator[TestClient]:
    """The app with positioning and traffic-awareness on one site and 25 minutes of telemetry processed."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        upgrade(conn, SOURCES)
    services = {"positioning": Positioning(), "traffic-awareness": TrafficAwareness()}
    app = create_app(database_url, mqtt_broker.url, services=services,
                     settings=load_settings(admin_token=ADMIN_TOKEN))
    site_yaml = (Path(__file__).parents[3] / "simulators" / "sites" / "demo_quarry.yaml").read_text()
    publisher = MqttPublisher(mqtt_broker.url)
    with TestClient(app) as client:
        response = client.put(f"/api/v1/sites/{SITE}", content=site_yaml,
                              headers={**ADMIN, "Content-Type": "application/yaml"})
        assert response.status_code in (200, 201), response.text
        for name in services:
            response = client.put(f"/api/v1/sites/{SITE}/services/{name}", json={"enabled": True}, headers=ADMIN)
            assert response.status_code == 200, response.text
        telemetry = traffic_run.telemetry
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE service_enablement SET settings = %s::jsonb WHERE site_id = %s AND service = "
                         "'traffic-awareness'", (f'{{"lane_offset_m": {LANE_OFFSET_M}}}', SITE))
            for m in traffic_run.machines.to_dict("records"):
                conn.execute("INSERT INTO machines (site_id, machine_id, kind, model, rated_payload_kg) "
                             "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                             (SITE, m["machine_id"], m["kind"], m["model"], m["rated_payload_kg"]))
            insert_telemetry(conn, telemetry[telemetry["ts"] < telemetry["ts"].min() + pd.Timedelta(minutes=25)]
                             .assign(site_id=SITE))
            catch_up_fully(conn, ServiceHost(services["positioning"]), [SITE])
            catch_up_fully(conn, ServiceHost(services["traffic-awareness"], publisher), [SITE])
        yield client
    publisher.close()


def _all(client: TestClient, path: str, **params: Any) -> list[dict]:
    return all_pages(client, path, ADMIN, **params)


def test_proximity_events_follow_the_contract(client: TestClient) -> None:
    everything = _all(client, f"{BASE}/proximity-events", limit=1000)
    assert everything and _all(client, f"{BASE}/proximity-events", limit=2) == everything
    assert {"machine_a", "machine_b", "at", "min_distance_m", "min_ttc_s", "level"} <= everything[0].keys()
    assert [e["at"] for e in everything] == sorted(e["at"] for e in everything)
    critical = _all(client, f"{BASE}/proximity-events", level="critical")
    assert all(e["level"] == "critical" for e in critical)
    later = _all(client, f"{BASE}/proximity-events", **{"from": everything[-1]["at"]})
    assert later == [e for e in everything if e["at"] >= everything[-1]["at"]]
    assert client.get(f"{BASE}/proximity-events", params={"cursor": "nope"}, headers=ADMIN).status_code == 400


def test_queues_summary_and_length(client: TestClient) -> None:
    queues = _all(client, f"{BASE}/queues", limit=5)
    assert queues and {"zone", "machine_id", "queued_from", "queued_to"} <= queues[0].keys()
    assert {q["zone"] for q in queues} <= {"load-a", "load-b", "crusher", "spoil"}
    summary = client.get(f"{BASE}/queues/summary", headers=ADMIN).json()["items"]
    loads = [s for s in summary if s["zone_type"] == "load"]
    assert loads and all({"mean_wait_s", "p90_wait_s", "loader_idle_minutes", "trucking"} <= s.keys() for s in loads)
    assert all(s["shift"] == "day" for s in summary)
    length = client.get(f"{BASE}/queues/length", params={"bucket_s": 300}, headers=ADMIN).json()
    assert length["series"] and max(p["length"] for s in length["series"] for p in s["points"]) > 0


def test_congestion_and_recommendations(client: TestClient, traffic_run) -> None:
    start = traffic_run.telemetry["ts"].min().isoformat()
    end = (traffic_run.telemetry["ts"].min() + pd.Timedelta(minutes=25)).isoformat()
    body = client.get(f"{BASE}/congestion", params={"from": start, "to": end}, headers=ADMIN).json()
    segments = {s["segment"]: s for s in body["segments"]}
    assert "junction" in segments and any(k.startswith("road-crusher#") for k in segments)
    assert all(s["free_flow_kmh"] is None or s["free_flow_kmh"] <= (s["limit_kmh"] or 1e9) for s in segments.values())
    advice = client.get(f"{BASE}/recommendations", params={"from": start, "to": end}, headers=ADMIN).json()
    assert "M/M/c//N" in advice["model"] and advice["zones"]
    for rec in advice["recommendations"]:
        assert rec["move_haulers"] >= 1 and rec["waiting_saved_min_per_hour"] > 0 and "Move" in rec["message"]


def test_card_kpis_and_alerts(client: TestClient, database_url: str, alerts_seen) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        card = TrafficAwareness().card(load_card_context(conn, SITE, "traffic-awareness"), TrafficAwareness.Settings())
        window = {"site_id": SITE, "start": pd.Timestamp("2026-01-01T00:00Z"), "end": pd.Timestamp("2026-02-01T00:00Z")}
        values = {k.name: conn.execute(k.daily_sql, window).fetchall() for k in TrafficAwareness.kpis}
        stored = conn.execute("SELECT count(*) FROM service_alerts WHERE site_id = %s AND service = "
                              "'traffic-awareness'", (SITE,)).fetchone()[0]
    assert card.title == "Traffic" and card.link == "proximity-events"
    assert [m["label"] for m in card.metrics][:2] == ["encounters today", "critical"]
    assert card.data["latest_encounters"]
    assert len(values["queue_minutes_per_load"]) == 1 and values["queue_minutes_per_load"][0][1] > 0
    assert len(values["critical_encounters_per_1000_machine_hours"]) == 1
    assert stored > 0
    deadline = pd.Timestamp.now() + pd.Timedelta(seconds=10)
    while len(alerts_seen) < stored and pd.Timestamp.now() < deadline:
        threading.Event().wait(0.1)
    topics = {t for t, _ in alerts_seen}
    assert topics == {f"sites/{SITE}/alerts/traffic"}
    assert all("caused_by" in (a.get("data") or {}) for _, a in alerts_seen)


def test_card_counts_haulers_standing_in_load_and_dump_zones_now(client: TestClient, database_url: str) -> None:
    """Each hauler's newest track point of the last 10 minutes: idle in a load or dump zone of the site file."""
    site = "traffic-live"
    track = [  # machine, kind, minutes ago, state, zone
        ("H1", "hauler", 1, "idle", "load-a"),      # counts
        ("H2", "hauler", 2, "idle", "crusher"),     # counts (a dump zone)
        ("H3", "hauler", 1, "idle", "parking"),     # not a load/dump zone
        ("H4", "hauler", 5, "idle", "load-b"),      # was standing ...
        ("H4", "hauler", 1, "moving", None),        # ... but has left since
        ("H5", "hauler", 20, "idle", "load-b"),     # nothing in the last 10 minutes
        ("H6", "hauler", 1, "moving", "spoil"),     # driving through
        ("L1", "loader", 1, "idle", "load-a"),      # not a hauler
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        save_site(conn, site, load_demo_site())
        cur = conn.cursor()
        cur.executemany("INSERT INTO machines (site_id, machine_id, kind, model, rated_payload_kg) "
                        "VALUES (%s, %s, %s, 'test', 28000) ON CONFLICT DO NOTHING",
                        sorted({(site, m, kind) for m, kind, *_ in track}))
        cur.executemany("INSERT INTO positioning.track (site_id, run_seq, machine_id, ts, state, zone, jump, carried)"
                        " VALUES (%s, 1, %s, now() - make_interval(mins => %s), %s, %s, false, false)",
                        [(site, m, ago, state, zone) for m, _, ago, state, zone in track])

        card = TrafficAwareness().card(load_card_context(conn, site, "traffic-awareness"), TrafficAwareness.Settings())
    metrics = {m["label"]: m["value"] for m in card.metrics}
    assert metrics == {"encounters today": 0, "critical": 0, "standing at load/dump zones now": 2}
    assert card.data == {"latest_encounters": [], "recent_alerts": 0}
