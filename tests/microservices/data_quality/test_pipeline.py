"""Every sensor fault through the real pipeline: simulator -> MQTT -> ingest -> runner -> data-quality API.

One module-scoped run: ten simulated minutes of the demo quarry, published to the real broker as fast as it
takes them, with different faults on different machines (each machine's faults on distinct sensors) and
three machines left healthy; one assertion per fault against the API and the simulator's ground truth.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient

from evaluation.data_quality import EXPECTED
from evaluation.stored import all_pages, catch_up_fully
from microservices.alerts import MqttPublisher
from microservices.data_quality import DataQuality
from microservices.runner import ServiceHost
from registry.api.app import create_app
from simulators.engine import simulate
from simulators.faults import parse_faults
from simulators.outputs import publish_live
from simulators.site import load_site
from sitepulse.settings import load_settings
from tests.conftest import running_worker, wait_until

ADMIN_TOKEN = "bootstrap-admin-token-for-data-quality-0123456"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SITE = "dq-pipeline"
BASE = f"/api/v1/sites/{SITE}/data-quality"
START_S = 60
PLAN = {  # machine -> faults, each on its own sensor
    "HX-01": ["heading=stuck0", "speed=offset-5", "fuel=stuck"],
    "HX-02": ["heading=absent", "speed=noisy10", "hours=implausible"],
    "HX-03": ["heading=noisy30", "speed=stuck0", "fuel=implausible", "clock=skew+30"],
    "HX-04": ["heading=offset180", "payload=offset+2.5", "hours=stuck"],
    "HX-05": ["heading=stuck", "payload=stuck", "fuel=absent"],
    "HX-06": ["speed=absent", "payload=absent", "hours=absent"],
    "HX-07": ["position=implausible", "clock=drift+120"],
    "WL-01": ["position=absent"],
}
HEALTHY = ("RT-01", "EX-01", "WL-02")
FAULTS = [(m, f.split("=")[0], f.split("=")[1]) for m, fs in PLAN.items() for f in fs]


@pytest.fixture(scope="module")
def run(database_url: str, mqtt_broker: Any) -> Iterator[dict[str, Any]]:
    """Publish the faulty quarry, ingest it, run the service, and serve the API over the result."""
    seen: list[tuple[str, dict]] = []
    ready = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_connect = lambda c, *_: (c.subscribe(f"sites/{SITE}/alerts/#", qos=1), ready.set())
    listener.on_message = lambda _c, _u, msg: seen.append((msg.topic, orjson.loads(msg.payload)))
    listener.connect(mqtt_broker.host, mqtt_broker.port)
    listener.loop_start()
    assert ready.wait(10)
    settings = load_settings(database_url=database_url, mqtt_url=mqtt_broker.url, admin_token=ADMIN_TOKEN,
                             ingest_client_id="ingest-dq-pipeline", ingest_batch_ms=50)
    spec = ",".join(f"{f}:{m}@{START_S}" for m, fs in PLAN.items() for f in fs)
    sim = simulate(load_site(None), site_id=SITE, duration_s=600, seed=1, faults=parse_faults(spec))
    service = DataQuality()
    app = create_app(database_url, mqtt_broker.url, services={"data-quality": service}, settings=settings)
    publisher = MqttPublisher(mqtt_broker.url)
    site_yaml = (Path(__file__).parents[3] / "simulators" / "sites" / "demo_quarry.yaml").read_text()
    try:
        with running_worker(settings), TestClient(app) as client, \
                psycopg.connect(database_url, autocommit=True) as conn:
            publish_live(sim, mqtt_broker.url, speedup=0, client_id="dq-pipeline-sim")
            truth = sim.truth_records()
            assert client.put(f"/api/v1/sites/{SITE}", content=site_yaml,
                              headers={**ADMIN, "Content-Type": "application/yaml"}).status_code in (200, 201)
            assert client.put(f"/api/v1/sites/{SITE}/services/data-quality", json={"enabled": True},
                              headers=ADMIN).status_code == 200
            expected = sum(1 for r in truth if r["type"] == "machine") * 601
            assert wait_until(lambda: conn.execute("SELECT count(*) FROM telemetry WHERE site_id = %s",
                                                   (SITE,)).fetchone()[0] >= expected, 60)
            catch_up_fully(conn, ServiceHost(service, publisher), [SITE])
            wait_until(lambda: any(t.endswith("/data-quality") for t, _ in seen), 10)
            findings = all_pages(client, BASE, ADMIN, **{"from": "2000-01-01T00:00:00Z"})
            yield {"client": client, "truth": truth, "findings": findings, "alerts": seen, "conn": conn}
    finally:
        publisher.close()
        listener.loop_stop()
        listener.disconnect()


@pytest.mark.parametrize(("machine", "sensor", "mode"), FAULTS, ids=[f"{m}-{s}={f}" for m, s, f in FAULTS])
def test_each_fault_is_found_with_since_evidence_and_effect(run: dict[str, Any], machine: str, sensor: str,
                                                           mode: str) -> None:
    truth = next(r for r in run["truth"] if r["type"] == "sensor_fault" and r["machine_id"] == machine
                 and r["sensor"] == sensor)
    status = EXPECTED[truth["mode"]]
    hits = [f for f in run["findings"] if f["machine_id"] == machine and f["sensor"] == sensor
            and f["status"] == status]
    assert hits, f"{machine} {sensor}={mode} not found; findings of {machine}: " \
                 f"{[(f['sensor'], f['status']) for f in run['findings'] if f['machine_id'] == machine]}"
    first = hits[0]
    assert first["since"] >= truth["started_at"][:19] or sensor == "clock"  # a clock ahead stamps its own times
    assert first["evidence"] and machine in first["effect"] and first["message"].startswith(f"{machine}: ")


@pytest.mark.parametrize("machine", HEALTHY)
def test_a_healthy_machine_has_no_finding(run: dict[str, Any], machine: str) -> None:
    assert [f["message"] + " | " + f["evidence"] for f in run["findings"] if f["machine_id"] == machine] == []


def test_open_findings_card_and_alerts(run: dict[str, Any]) -> None:
    client = run["client"]
    open_now = all_pages(client, BASE, ADMIN)
    assert {(f["machine_id"], f["sensor"]) for f in open_now} >= {(m, s) for m, s, _ in FAULTS}
    assert all(f["ended_at"] is None for f in open_now)
    machines = client.get(f"{BASE}/machines", headers=ADMIN).json()["items"]
    assert {m["machine_id"] for m in machines if not m["healthy"]} == set(PLAN)
    view = client.get(f"/api/v1/sites/{SITE}/view", headers=ADMIN).json()
    card = next(c for c in view["cards"] if c["service"] == "data-quality")
    lines = [row["finding"] for row in card["data"]["findings"]]
    assert any(line.startswith("HX-01: heading stuck at 0 deg since ") and "positions used instead" in line
               for line in lines), lines
    alerted = {(a["machine_id"], a["data"]["sensor"]) for t, a in run["alerts"] if t.endswith("/data-quality")}
    assert alerted >= {(m, s) for m, s, _ in FAULTS}


def test_evaluation_counts_degraded_inputs_of_the_sensors_a_service_reads(run: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from microservices.weight_loading import WeightLoading
    from registry.evaluation import evaluate

    conn = run["conn"]
    conn.execute("INSERT INTO service_enablement (site_id, service, enabled, enabled_at) VALUES (%s, "
                 "'weight-loading', true, '2026-01-04T00:00:00Z') ON CONFLICT (site_id, service) DO UPDATE SET "
                 "enabled_at = excluded.enabled_at", (SITE,))
    [item] = evaluate(conn, {"weight-loading": WeightLoading()}, [SITE], as_of=datetime(2026, 1, 10, tzinfo=UTC))
    inputs = item["degraded_inputs"]
    assert inputs["available"] and "heading" not in inputs["sensors"]  # weight loading reads no heading
    assert set(inputs["after"]) == {"clock", "fuel", "hours", "payload", "position", "speed"}
    # 10 simulated minutes, faults from minute 1: each bad sensor counts under 9 minutes per machine
    assert 0 < inputs["after_machine_hours"] <= sum(len(fs) for fs in PLAN.values()) * 9 / 60
    assert inputs["before"] == {} and any(r.startswith("inputs degraded: ") for r in item["reasons"])


def test_degraded_machine_hours_kpi(run: dict[str, Any]) -> None:
    window = {"site_id": SITE, "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    [(day, hours)] = DataQuality.kpis[0].daily(run["conn"], **window)
    assert str(day) == "2026-01-05" and 0 < hours <= len(FAULTS) * 9 / 60
