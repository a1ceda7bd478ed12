"""ISO 15143-3 (AEMP 2.0) fleet snapshot: the standard's element names, the caller's machines only, no nulls."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest.contract import Decoded, Decoder
from ingest.writer import TelemetryWriter
from registry.api.app import create_app
from registry.tokens import create_token
from sitepulse.settings import load_settings

ADMIN = "aemp-admin-token-0123456789abcdef0123456"
SITE = ("name: AEMP pit\nmachines:\n  - {id: H1, kind: hauler, model: Volvo A30G, rated_payload_kg: 28000,"
        " serial_number: A30G-1234}\n  - {id: D1, kind: dozer, model: D6}\n")


@pytest.fixture(scope="module")
def client(database_url: str, mqtt_broker: Any) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(database_url, mqtt_broker.url, services={}, settings=load_settings(admin_token=ADMIN))
    writer = TelemetryWriter(database_url)
    writer.open()
    batch, decoder = Decoded(), Decoder()
    now = time.time()
    for site, machine, sample in (
        ("pit", "H1", {"ts": now, "lat": 59.3, "lon": 18.1, "engine_hours": 1234.56, "fuel_used_l": 98765.4,
                       "engine_on": True}),
        ("pit", "D1", {"ts": now, "speed_kmh": 0.0}),
        ("other", "X9", {"ts": now, "lat": 1.0, "lon": 2.0}),
    ):
        decoder.decode_into(batch, f"sites/{site}/machines/{machine}/telemetry", json.dumps(sample).encode(),
                            datetime.now(UTC))
    writer.write(batch)
    writer.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        token = create_token(conn, "pit manager", ["pit"]).token
    with TestClient(app) as c:
        for site in ("pit", "other"):
            assert c.put(f"/api/v1/sites/{site}", content=SITE, headers={
                "Authorization": f"Bearer {ADMIN}", "Content-Type": "application/yaml"}).status_code == 201
        yield c, {"Authorization": f"Bearer {token}"}


def test_fleet_page_uses_the_standard_names(client: tuple[TestClient, dict[str, str]]) -> None:
    c, manager = client
    r = c.get("/aemp/Fleet/1", headers=manager)
    assert r.status_code == 200, r.text
    fleet = r.json()["Fleet"]
    assert set(fleet) == {"SnapshotTime", "Links", "Equipment"}
    assert [link["Rel"] for link in fleet["Links"]] == ["self", "last"]
    equipment = {e["EquipmentHeader"]["EquipmentID"]: e for e in fleet["Equipment"]}
    assert set(equipment) == {"pit:H1", "pit:D1"}  # never another site's machines
    h1 = equipment["pit:H1"]
    assert h1["EquipmentHeader"] == {"OEMName": "Volvo", "Model": "A30G", "EquipmentID": "pit:H1",
                                     "SerialNumber": "A30G-1234"}
    assert h1["Location"]["Latitude"] == 59.3 and h1["Location"]["Longitude"] == 18.1 and h1["Location"]["datetime"]
    assert h1["CumulativeOperatingHours"]["Hour"] == 1234.56
    assert h1["FuelUsed"] == {"datetime": h1["FuelUsed"]["datetime"], "FuelUnits": "litre", "FuelConsumed": 98765.4}
    assert h1["EngineStatus"]["Running"] is True
    d1 = equipment["pit:D1"]
    assert set(d1) == {"EquipmentHeader"}  # elements without data are omitted, not null
    assert "null" not in r.text


def test_admin_sees_every_site_and_pages_end(client: tuple[TestClient, dict[str, str]]) -> None:
    c, _ = client
    admin = {"Authorization": f"Bearer {ADMIN}"}
    equipment = c.get("/aemp/Fleet/1", headers=admin).json()["Fleet"]["Equipment"]
    ids = {e["EquipmentHeader"]["EquipmentID"] for e in equipment}
    assert {"pit:H1", "other:X9"} <= ids
    assert c.get("/aemp/Fleet/2", headers=admin).status_code == 404
    assert c.get("/aemp/Fleet/0", headers=admin).status_code == 422
    assert c.get("/aemp/Fleet/1").status_code == 401


def test_one_machine_and_xml(client: tuple[TestClient, dict[str, str]]) -> None:
    c, manager = client
    r = c.get("/aemp/Fleet/Equipment/ID/pit:H1", headers=manager)
    assert r.status_code == 200 and r.json()["Equipment"]["EquipmentHeader"]["Model"] == "A30G"
    assert c.get("/aemp/Fleet/Equipment/ID/other:X9", headers=manager).status_code == 404
    assert c.get("/aemp/Fleet/Equipment/ID/pit:nope", headers=manager).status_code == 404
    xml = c.get("/aemp/Fleet/1", headers={**manager, "Accept": "application/xml"})
    assert xml.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(xml.content)
    assert root.tag == "Fleet" and root.find("SnapshotTime") is not None
    location = root.find("Equipment/Location")
    assert location is not None and location.get("datetime") and location.find("Latitude").text == "59.3"
    assert [e.find("Rel").text for e in root.findall("Links")] == ["self", "last"]
