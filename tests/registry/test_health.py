"""Probes without a token, readiness naming what is down, and OpenAPI docs declaring bearer auth."""

from __future__ import annotations

from fastapi.testclient import TestClient

from registry.api.app import create_app
from sitepulse.embedded.ports import free_port
from sitepulse.settings import load_settings


def test_healthz_and_readyz_need_no_token(api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}


def test_readyz_names_an_unreachable_broker(database_url: str) -> None:
    app = create_app(database_url, f"mqtt://127.0.0.1:{free_port()}", services={}, settings=load_settings())
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    reasons = response.json()["reasons"]
    assert len(reasons) == 1 and reasons[0].startswith("SITEPULSE_MQTT_URL: cannot reach broker")


def test_openapi_declares_bearer_auth_on_protected_routes(api) -> None:
    schema = api.client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["bearer"][
            "description"]}
    assert schema["paths"]["/api/v1/sites/{site_id}/alerts"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    put_site = schema["paths"]["/api/v1/sites/{site_id}"]["put"]["requestBody"]["content"]
    assert {"application/yaml", "application/geo+json"} <= set(put_site)
    assert api.client.get("/docs").status_code == 200
