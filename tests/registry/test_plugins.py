"""A service's own routes: mounted under its site path, reachable only while enabled, paginated."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi import APIRouter
from pydantic import BaseModel

from microservices.sdk import Outputs, Service
from registry.api.app import create_app
from sitepulse.errors import SitePulseError
from sitepulse.settings import load_settings

THINGS = "/api/v1/sites/north/things/things"


def test_service_route_is_404_until_enabled(api) -> None:
    response = api.client.get(THINGS, headers=api.north)
    assert response.status_code == 404
    assert response.json() == {"detail": "service 'things' is not enabled for site 'north'"}
    api.enable("north", "base", "things")
    response = api.client.get(THINGS, headers=api.north)
    assert response.status_code == 200
    first = response.json()["items"][0]
    assert first == {"n": 1, "site_id": "north", "threshold_kmh": 5.0}  # the host's context: site, settings


def test_service_sees_its_settings_for_the_site(api) -> None:
    api.enable("north", "base")
    body = {"enabled": True, "settings": {"threshold_kmh": 9}}
    api.client.put("/api/v1/sites/north/services/things", json=body, headers=api.admin)
    assert api.client.get(THINGS, headers=api.north).json()["items"][0]["threshold_kmh"] == 9.0


def test_pagination_round_trip(api) -> None:
    api.enable("north", "base", "things")
    first = api.client.get(THINGS, headers=api.north).json()
    assert len(first["items"]) == 100 and first["next_cursor"]
    seen, cursor = [], None
    while True:
        params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = api.client.get(THINGS, params=params, headers=api.north).json()
        seen += [item["n"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(1, 251))


def test_limit_over_maximum_is_422_naming_it(api) -> None:
    api.enable("north", "base", "things")
    for url in (THINGS, "/api/v1/sites/north/alerts", "/api/v1/sites", "/api/v1/services"):
        response = api.client.get(url, params={"limit": 1001}, headers=api.north)
        assert response.status_code == 422, url
        body = response.json()
        assert body["detail"] == "query parameter 'limit': Input should be less than or equal to 1000"
        assert body["errors"][0]["loc"] == ["query", "limit"]
    assert api.client.get("/api/v1/sites", params={"limit": 0}, headers=api.north).status_code == 422


def test_foreign_cursor_is_400(api) -> None:
    api.enable("north", "base", "things")
    wrong_shape = base64.urlsafe_b64encode(b'["x", "y", "z"]').decode().rstrip("=")
    for url in (THINGS, "/api/v1/sites/north/alerts", "/api/v1/sites", "/api/v1/services"):
        for cursor in ("%%%not-base64", "bm90IGpzb24", wrong_shape):
            if url == THINGS and cursor == wrong_shape:
                continue  # the test service takes any list; the registry's lists check the key's shape
            response = api.client.get(url, params={"cursor": cursor}, headers=api.north)
            assert response.status_code == 400, (url, cursor, response.text)
            assert response.json() == {"detail": "cursor is not one this API issued"}


def test_disabling_hides_the_route_again(api) -> None:
    api.enable("north", "base", "things")
    api.enable("north", "top", "things", enabled=False)
    assert api.client.get(THINGS, headers=api.north).status_code == 404


def test_a_service_cannot_shadow_the_registrys_site_routes(database_url: str) -> None:
    class Alerts(_Routed):
        name = "alerts"

    with pytest.raises(SitePulseError, match="'alerts': the name is reserved"):
        create_app(database_url, "mqtt://127.0.0.1:1", services={"alerts": Alerts()},
                   settings=load_settings())


class _Routed(Service):
    def process(self, batch: Any, state: dict, settings: BaseModel) -> tuple[Outputs, dict]:
        return Outputs(), state

    def router(self) -> APIRouter:
        return APIRouter()
