"""The real API (positioning and weight-loading loaded) on a migrated database with two sites full of data.

Site ``north`` and site ``south`` each have telemetry, derived rows, an alert and a need; ``north``
has a site token of its own. Tests check that nothing of ``south`` can be read or changed with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.contract import Decoded, Decoder
from ingest.writer import TelemetryWriter
from microservices.alerts import store_alerts
from microservices.discovery import discover_services
from microservices.runner import ServiceHost
from microservices.sdk import Alert
from registry.api.app import create_app
from registry.tokens import create_token
from sitepulse.settings import load_settings

ADMIN_TOKEN = "sp_security-suite-admin-token-0123456789abcdef"
SERVICES = "positioning,weight-loading"
SQUARE = [[18.0, 59.0], [18.004, 59.0], [18.004, 59.002], [18.0, 59.002]]
DUMP = [[18.006, 59.0], [18.008, 59.0], [18.008, 59.002], [18.006, 59.002]]


def site_yaml(name: str, machine: str) -> str:
    return f"""
name: {name}
zones:
  - {{id: load-a, type: load, speed_limit_kmh: 15, polygon: {SQUARE}}}
  - {{id: dump-a, type: dump, polygon: {DUMP}}}
machines:
  - {{id: {machine}, kind: hauler, model: A30G, rated_payload_kg: 28000}}
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class SecureApi:
    app: FastAPI
    client: TestClient
    url: str
    admin: dict[str, str]
    north: dict[str, str]
    north_token: str
    south_alert: int
    south_need: int

    def endpoints(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every documented (method, path, operation), service routes included."""
        return [(method.upper(), path, op) for path, ops in self.app.openapi()["paths"].items()
                for method, op in ops.items() if method in {"get", "put", "post", "delete", "patch"}]


def _telemetry(url: str, site_id: str, machine: str) -> None:
    start = datetime(2026, 11, 2, 8, tzinfo=UTC).timestamp()
    decoder, out = Decoder(), Decoded()
    for i in range(600):  # ten minutes: in the load zone, then driving to the dump
        lon = 18.002 if i < 300 else 18.007
        sample = {"ts": start + i, "seq": i, "lat": 59.001, "lon": lon, "speed_kmh": 0.0 if i < 300 else 20.0,
                  "payload_kg": 0.0 if i < 200 else 27000.0, "engine_on": True, "fuel_used_l": 100 + i / 100,
                  "engine_hours": 500 + i / 3600}
        decoder.decode_into(out, f"sites/{site_id}/machines/{machine}/telemetry", orjson.dumps(sample),
                            datetime.now(UTC))
    with TelemetryWriter(url) as writer:
        writer.write(out)


def table_digests(url: str) -> dict[str, tuple[int, str]]:
    """(row count, md5 of every row) of every table in every SitePulse schema: proof nothing changed."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND table_name NOT IN ('usage_events', 'api_tokens', 'access_log', 'ingest_worker_stats')"
            " ORDER BY 1").fetchall()
        out = {}
        for (table,) in tables:
            row = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
                               f" FROM {table} t").fetchone()
            out[table] = (row[0], row[1])
        return out


@pytest.fixture(scope="module")
def secure(database_url: str, mqtt_broker: Any) -> Iterator[SecureApi]:
    services = discover_services(SERVICES)
    settings = load_settings(admin_token=ADMIN_TOKEN, load_services=SERVICES, api_rate_per_s=0)
    app = create_app(database_url, mqtt_broker.url, services=services, settings=settings)
    with psycopg.connect(database_url, autocommit=True) as conn:
        north = create_token(conn, "north manager", ["north"]).token
    with TestClient(app) as client:
        admin = bearer(ADMIN_TOKEN)
        for site_id, machine in (("north", "N1"), ("south", "S1")):
            response = client.put(f"/api/v1/sites/{site_id}", content=site_yaml(site_id.title(), machine),
                                  headers={**admin, "Content-Type": "application/yaml"})
            assert response.status_code == 201, response.text
            for name in ("positioning", "weight-loading"):
                response = client.put(f"/api/v1/sites/{site_id}/services/{name}", json={"enabled": True},
                                      headers=admin)
                assert response.status_code == 200, response.text
            _telemetry(database_url, site_id, machine)
        with psycopg.connect(database_url, autocommit=True) as conn:
            for service in services.values():
                ServiceHost(service).catch_up(conn)
            store_alerts(conn, "south", "positioning", [Alert(key="s-1", level="warning", message="south only",
                                                              at=datetime.now(UTC), machine_id="S1")])
            alert = conn.execute("SELECT id FROM service_alerts WHERE site_id = 'south'").fetchone()[0]
        need = client.post("/api/v1/sites/south/needs", headers=admin,
                           json={"text": "south secret need", "value_score": 5, "effort": 3})
        assert need.status_code == 201, need.text
        time.sleep(0.1)
        yield SecureApi(app, client, database_url, admin, bearer(north), north, alert, need.json()["id"])
