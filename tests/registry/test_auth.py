"""Auth on every route: 401 without a valid token, 404 for another customer's site, 403 for admin routes."""

from __future__ import annotations

import re

import psycopg
import pytest

from registry.tokens import create_token, hash_token

# a report's link in a scheduled e-mail is its own credential (registry/api/routes/reports.py)
UNAUTHENTICATED = {"/healthz", "/readyz", "/docs", "/openapi.json", "/api/v1/report-links/{token}"}
PARAMS = {"name": "things", "alert_id": "1", "token_id": "1", "need_id": "1", "service": "things", "table": "counts",
          "page": "1", "equipment_id": "north:H1", "rule_id": "1", "trial_id": "1", "schedule_id": "1",
          "token": "x" * 32}


def _url(path: str, site: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: site if m[1] == "site_id" else PARAMS[m[1]], path)


def _call(api, method: str, url: str, headers: dict[str, str]):
    return api.client.request(method, url, headers=headers, json={} if method in {"PUT", "POST"} else None)


@pytest.fixture(scope="module")
def south_has_everything(api) -> None:
    """South with every service enabled, so a 404 can only come from the token, not a switched-off service."""
    api.enable("south", "base", "things", "top")


def test_every_documented_route_is_covered(api) -> None:
    endpoints = api.endpoints()
    site_routes = [p for _, p in endpoints if "{site_id}" in p]
    assert ("GET", "/api/v1/sites/{site_id}/things/things") in endpoints  # service routes are documented
    assert len(site_routes) >= 7  # the enumeration must not silently come back empty


def test_no_token_is_401_everywhere(api) -> None:
    for method, path in api.endpoints():
        if path in UNAUTHENTICATED:
            continue
        response = _call(api, method, _url(path, "north"), {})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json() == {"detail": "missing or invalid bearer token"}
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer sp_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "sp_x"])
def test_bad_token_is_401(api, header: str) -> None:
    response = api.client.get("/api/v1/sites", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["detail"] == "missing or invalid bearer token"


def test_site_token_gets_404_on_every_route_of_another_site(api, south_has_everything) -> None:
    site_routes = [(m, p) for m, p in api.endpoints() if "{site_id}" in p]
    for method, path in site_routes:
        response = _call(api, method, _url(path, "south"), api.north)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json() == {"detail": "site 'south' not found"}, (method, path)
        # ... word for word what a site that does not exist answers: existence is not leaked
        missing = _call(api, method, _url(path, "nowhere"), api.north)
        assert missing.status_code == 404
        assert missing.json() == {"detail": "site 'nowhere' not found"}


def test_the_same_routes_work_for_a_token_of_that_site(api, south_has_everything) -> None:
    for path in ("/api/v1/sites/south", "/api/v1/sites/south/services", "/api/v1/sites/south/alerts",
                 "/api/v1/sites/south/things/things"):
        assert api.client.get(path, headers=api.both).status_code == 200, path
        assert api.client.get(path, headers=api.admin).status_code == 200, path


ADMIN_ONLY = [
    ("POST", "/api/v1/tokens", {"name": "x", "sites": ["north"]}),
    ("GET", "/api/v1/tokens", None),
    ("DELETE", "/api/v1/tokens/1", None),
    ("GET", "/metrics", None),
    ("PUT", "/api/v1/sites/north/services/base", {"enabled": True}),
]


@pytest.mark.parametrize(("method", "url", "body"), ADMIN_ONLY)
def test_admin_routes_refuse_a_site_token(api, method: str, url: str, body: dict | None) -> None:
    response = api.client.request(method, url, headers=api.north, json=body)
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "this needs an admin token"}


def test_site_put_refuses_a_site_token_of_that_site(api) -> None:
    response = api.client.put("/api/v1/sites/north", content="name: x\n", headers={
        **api.north, "Content-Type": "application/yaml"})
    assert response.status_code == 403
    assert response.json() == {"detail": "this needs an admin token"}


def test_admin_sees_every_site(api) -> None:
    sites = api.client.get("/api/v1/sites", headers=api.admin).json()["items"]
    assert [s["site_id"] for s in sites] == ["north", "south"]
    north_only = api.client.get("/api/v1/sites", headers=api.north).json()["items"]
    assert [s["site_id"] for s in north_only] == ["north"]


def test_tokens_are_stored_hashed(api, db: psycopg.Connection) -> None:
    dump = "\n".join(str(row) for row in db.execute("SELECT * FROM api_tokens"))
    assert api.north_token not in dump
    assert hash_token(api.north_token) in dump
    assert "bootstrap-admin-token" not in dump  # the bootstrap admin token is never written


def test_revoked_token_stops_working(api, db: psycopg.Connection) -> None:
    issued = create_token(db, "short-lived", ["north"])
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert api.client.get("/api/v1/sites/north", headers=headers).status_code == 200
    assert api.client.delete(f"/api/v1/tokens/{issued.id}", headers=api.admin).status_code == 204
    assert api.client.get("/api/v1/sites/north", headers=headers).status_code == 401
    assert api.client.delete(f"/api/v1/tokens/{issued.id}", headers=api.admin).status_code == 404


def test_last_used_is_recorded(api, db: psycopg.Connection) -> None:
    issued = create_token(db, "watched", ["north"])
    api.client.get("/api/v1/sites", headers={"Authorization": f"Bearer {issued.token}"})
    used = db.execute("SELECT last_used_at FROM api_tokens WHERE id = %s", (issued.id,)).fetchone()[0]
    assert used is not None
