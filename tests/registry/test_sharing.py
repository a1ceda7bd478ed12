"""Co-creation that cycles back: a customer's service stays theirs until shared, then every site sees it, credited."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from microservices.sdk import Outputs, Service
from registry.api.app import create_app
from registry.tokens import create_token
from sitepulse.settings import load_settings

ADMIN_TOKEN = "bootstrap-admin-token-for-sharing-0123456789"


class _Quiet(Service):
    def process(self, batch: Any, state: dict, settings: BaseModel) -> tuple[Outputs, dict]:
        return Outputs(), state


class PitCheck(_Quiet):
    name = "pit-check"
    summary = "Daily pit wall inspection reminders"
    author = "Acme Aggregates"  # built with and by this customer
    consumes = ("lat", "lon")


class Provider(_Quiet):
    name = "provider-made"


@dataclass
class Clients:
    client: TestClient
    admin: dict[str, str]
    acme: dict[str, str]
    borealis: dict[str, str]


@pytest.fixture(scope="module")
def clients(database_url: str) -> Iterator[Clients]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for site in ("acme-pit", "borealis-pit"):
            conn.execute("INSERT INTO sites (site_id, name, config) VALUES (%s, %s, '{}')", (site, site))
        acme = create_token(conn, "acme manager", ["acme-pit"]).token
        borealis = create_token(conn, "borealis manager", ["borealis-pit"]).token
    services: dict[str, Service] = {"pit-check": PitCheck(), "provider-made": Provider()}
    app = create_app(database_url, "mqtt://127.0.0.1:1", services=services,
                     settings=load_settings(admin_token=ADMIN_TOKEN))
    with TestClient(app) as client:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for site, customer in (("acme-pit", "Acme Aggregates"), ("borealis-pit", "Borealis Stone")):
            assert client.put(f"/api/v1/sites/{site}/customer", json={"customer": customer},
                              headers=admin).status_code == 200
        yield Clients(client, admin, {"Authorization": f"Bearer {acme}"}, {"Authorization": f"Bearer {borealis}"})


def _catalogue(c: Clients, headers: dict[str, str]) -> dict[str, dict]:
    return {s["name"]: s for s in c.client.get("/api/v1/services", headers=headers).json()["items"]}


def test_a_contributed_service_is_its_contributors_until_shared(clients: Clients) -> None:
    assert set(_catalogue(clients, clients.acme)) == {"pit-check", "provider-made"}
    assert set(_catalogue(clients, clients.borealis)) == {"provider-made"}
    mine = _catalogue(clients, clients.acme)["pit-check"]
    assert mine["contributed_by"] == "Acme Aggregates" and mine["shared"] is False
    assert clients.client.put("/api/v1/sites/acme-pit/services/pit-check", json={"enabled": True},
                              headers=clients.admin).status_code == 200
    refused = clients.client.put("/api/v1/sites/borealis-pit/services/pit-check", json={"enabled": True},
                                 headers=clients.admin)
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith("service 'pit-check' was contributed by 'Acme Aggregates' and is "
                                               "not shared yet")


def test_once_shared_every_site_sees_it_credited_and_adoption_spans_sites(clients: Clients) -> None:
    assert clients.client.put("/api/v1/services/pit-check/sharing", json={"shared": True},
                              headers=clients.borealis).status_code == 403
    shared = clients.client.put("/api/v1/services/pit-check/sharing", json={"shared": True}, headers=clients.admin)
    assert shared.status_code == 200
    assert shared.json()["credit"] == "contributed by Acme Aggregates" and shared.json()["shared_by"]
    seen = _catalogue(clients, clients.borealis)["pit-check"]
    assert seen["credit"] == "contributed by Acme Aggregates" and seen["shared"] is True
    assert clients.client.put("/api/v1/sites/borealis-pit/services/pit-check", json={"enabled": True},
                              headers=clients.admin).status_code == 200
    evaluation = clients.client.get("/api/v1/evaluation", headers=clients.borealis).json()["items"]
    assert evaluation[0]["contributed_by"] == "Acme Aggregates"
    assert evaluation[0]["across_sites"]["sites_enabled"] == 2
    data_use = clients.client.get("/api/v1/sites/borealis-pit/data-use", headers=clients.borealis).json()["items"]
    assert data_use[0]["contributed_by"] == "Acme Aggregates"
    assert data_use[0]["telemetry_fields_read"] == ["lat", "lon"]


def test_an_admin_can_register_a_contributor(clients: Clients) -> None:
    response = clients.client.put("/api/v1/services/provider-made/sharing",
                                  json={"shared": False, "contributed_by": "Borealis Stone"}, headers=clients.admin)
    assert response.json()["contributed_by"] == "Borealis Stone" and response.json()["shared"] is False
    assert "provider-made" not in _catalogue(clients, clients.acme)
    clients.client.put("/api/v1/services/provider-made/sharing", json={"shared": True}, headers=clients.admin)
    assert _catalogue(clients, clients.acme)["provider-made"]["credit"] == "contributed by Borealis Stone"
    assert clients.client.get("/api/v1/sites/acme-pit/customer", headers=clients.acme).json()["customer"] == \
        "Acme Aggregates"
