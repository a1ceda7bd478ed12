"""Auth on every route, site isolation on every site route, injection strings everywhere, tokens hashed.

Routes come from ``app.openapi()["paths"]`` (in this FastAPI version ``app.routes`` holds unexpanded
included routers), so a route added later is covered without editing this file; a floor on the
counts keeps the enumeration from silently coming back empty.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from registry.tokens import hash_token

from .conftest import ADMIN_TOKEN, SecureApi, bearer, table_digests

# a report's link in a scheduled e-mail is its own credential (registry/api/routes/reports.py)
PUBLIC = {"/healthz", "/readyz", "/docs", "/openapi.json", "/api/v1/report-links/{token}"}
VALUES = {"name": "positioning", "service": "positioning", "table": "zone_visits", "alert_id": "1",
          "token_id": "999999", "need_id": "1", "page": "1", "equipment_id": "north:N1", "rule_id": "1",
          "schedule_id": "1", "trial_id": "1", "token": "x" * 32}
INJECTIONS = ["' OR 1=1 --", '"; DROP TABLE telemetry; --', "1; DELETE FROM sites", "north' UNION SELECT *--",
              "%00", "\u0000", "ü\u202e\U0001f4a5", "../../etc/passwd", "$(rm -rf /)", "1e309", "-1",
              "9" * 40, "x" * 5000]
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/v1/sites/{site_id}/services/{name}"): {"enabled": False},
    ("PUT", "/api/v1/sites/{site_id}/services/{name}/stage"): {"stage": "retired", "reason": "x"},
    ("POST", "/api/v1/sites/{site_id}/needs"): {"text": "x", "value_score": 1, "effort": 1},
    ("PATCH", "/api/v1/sites/{site_id}/needs/{need_id}"): {"status": "done"},
    ("PUT", "/api/v1/sites/{site_id}/customer"): {"customer": "evil"},
}


def url_for(path: str, site: str, **values: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: site if m[1] == "site_id" else values.get(m[1], VALUES[m[1]]), path)


def call(api: SecureApi, method: str, url: str, headers: dict[str, str], path: str = "") -> Any:
    body = BODIES.get((method, path), {} if method in {"PUT", "POST", "PATCH"} else None)
    if path == "/api/v1/sites/{site_id}" and method == "PUT":
        return api.client.put(url, content="name: evil\n", headers={**headers, "Content-Type": "application/yaml"})
    return api.client.request(method, url, headers=headers, json=body)


def test_the_route_enumeration_is_complete(secure: SecureApi) -> None:
    paths = {p for _, p, _ in secure.endpoints()}
    for expected in ("/api/v1/sites/{site_id}/weight-loading/cycles", "/api/v1/sites/{site_id}/positioning/zone-events",
                     "/api/v1/sites/{site_id}/view", "/aemp/Fleet/{page}", "/api/v1/tokens"):
        assert expected in paths
    assert len(secure.endpoints()) >= 35


@pytest.mark.parametrize("headers", [{}, bearer("sp_made-up-token"), {"Authorization": "Basic YTpi"},
                                     bearer(ADMIN_TOKEN + "x"), bearer(ADMIN_TOKEN.upper())],
                         ids=["none", "unknown", "basic", "admin-plus-one", "admin-uppercase"])
def test_every_route_but_health_needs_a_valid_token(secure: SecureApi, headers: dict[str, str]) -> None:
    checked = 0
    for method, path, _ in secure.endpoints():
        if path in PUBLIC:
            continue
        response = call(secure, method, url_for(path, "north"), headers, path)
        assert response.status_code == 401, (method, path, response.status_code, response.text)
        assert response.json()["detail"].startswith(("missing or invalid bearer token", "expired or foreign"))
        checked += 1
    assert checked >= 35


def test_public_routes_say_nothing_about_data(secure: SecureApi) -> None:
    assert secure.client.get("/healthz").status_code == 200
    ready = secure.client.get("/readyz")
    assert ready.status_code in (200, 503)
    for response in (secure.client.get("/healthz"), ready):
        assert "north" not in response.text and "south" not in response.text
    assert secure.client.get("/openapi.json").status_code == 200


def test_site_token_gets_404_for_another_site_on_every_route_reads_and_writes(secure: SecureApi) -> None:
    before = table_digests(secure.url)
    site_routes = [(m, p) for m, p, _ in secure.endpoints() if "{site_id}" in p]
    assert len(site_routes) >= 25
    for method, path in site_routes:
        response = call(secure, method, url_for(path, "south", need_id=str(secure.south_need),
                                                  alert_id=str(secure.south_alert)), secure.north, path)
        assert response.status_code == 404, (method, path, response.text)
        nowhere = call(secure, method, url_for(path, "nowhere"), secure.north, path)
        assert nowhere.status_code == 404, (method, path)
        # word for word what a site that does not exist answers: existence is not leaked
        assert response.json() == {"detail": "site 'south' not found"}, (method, path, response.text)
        assert nowhere.json() == {"detail": "site 'nowhere' not found"}, (method, path, nowhere.text)
    assert table_digests(secure.url) == before, "a refused request changed stored data"


def test_ids_of_another_site_are_not_reachable_through_an_own_site(secure: SecureApi, db: psycopg.Connection) -> None:
    """An alert or need of south addressed through north (which the token may see) is 404 and untouched."""
    ack = secure.client.post(f"/api/v1/sites/north/alerts/{secure.south_alert}/ack", headers=secure.north)
    assert ack.status_code == 404, ack.text
    assert db.execute("SELECT acknowledged_at FROM service_alerts WHERE id = %s",
                      (secure.south_alert,)).fetchone()[0] is None
    patch = secure.client.patch(f"/api/v1/sites/north/needs/{secure.south_need}", headers=secure.north,
                                json={"value_score": 9})
    assert patch.status_code == 404, patch.text
    assert db.execute("SELECT value_score FROM needs WHERE id = %s", (secure.south_need,)).fetchone()[0] == 5
    for url in ("/aemp/Fleet/Equipment/ID/south:S1", "/api/v1/evaluation?site_id=south",
                "/api/v1/sites/south/export/telemetry", "/api/v1/sites/south/export/positioning/zone_visits"):
        response = secure.client.get(url, headers=secure.north)
        assert response.status_code in (403, 404), (url, response.status_code)
    fleet = secure.client.get("/aemp/Fleet/1", headers={**secure.north, "Accept": "application/json"})
    assert fleet.status_code == 200 and "S1" not in fleet.text and "south" not in fleet.text
    sites = secure.client.get("/api/v1/sites", headers=secure.north).json()["items"]
    assert [s["site_id"] for s in sites] == ["north"]
    view = secure.client.get("/api/v1/sites/north/view", headers=secure.north)
    assert view.status_code == 200 and "S1" not in view.text and "south" not in view.text
    for url in ("/api/v1/sites/north/weight-loading/cycles", "/api/v1/sites/north/positioning/zone-events",
                "/api/v1/sites/north/export/telemetry", "/api/v1/sites/north/alerts"):
        response = secure.client.get(url, headers=secure.north)
        assert response.status_code == 200, (url, response.text)
        assert "S1" not in response.text and "south" not in response.text, url


def _injection_requests(secure: SecureApi) -> list[tuple[str, str]]:
    """(method, url) for every GET route with each injection string in each path id and each query filter."""
    out = []
    for method, path, op in secure.endpoints():
        if method != "GET" or path in PUBLIC or path.endswith("/stream"):
            continue
        params = op.get("parameters", [])
        for param in params:
            if param["in"] not in ("path", "query"):
                continue
            for evil in INJECTIONS:
                if param["in"] == "path":
                    url = url_for(path, "north", **{param["name"]: quote(evil, safe="")}) if param[
                        "name"] != "site_id" else url_for(path, quote(evil, safe=""))
                else:
                    url = f"{url_for(path, 'north')}?{param['name']}={quote(evil, safe='')}"
                out.append((method, url))
    return out


def test_injection_strings_in_every_id_and_filter_are_refused_or_harmless(secure: SecureApi) -> None:
    before = table_digests(secure.url)
    requests = _injection_requests(secure)
    assert len(requests) >= 700
    answered: dict[int, int] = {}
    for method, url in requests:
        response = secure.client.request(method, url, headers=secure.admin)
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        assert response.status_code < 500, (url, response.status_code, response.text[:300])
        if response.status_code >= 400:
            detail = response.json()["detail"]
            assert isinstance(detail, str) and detail and "Traceback" not in detail, url
            assert "syntax error" not in detail.lower() and "psycopg" not in detail.lower(), (url, detail)
    assert table_digests(secure.url) == before, "an injection string changed stored data"
    with psycopg.connect(secure.url) as conn:
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 1200
        assert conn.execute("SELECT count(*) FROM sites").fetchone()[0] == 2
    assert answered.get(200, 0) > 0 and sum(v for k, v in answered.items() if 400 <= k < 500) > 0


def test_injection_strings_in_json_bodies_are_stored_as_text_or_refused(secure: SecureApi,
                                                                          db: psycopg.Connection) -> None:
    before = db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    for evil in INJECTIONS[:4]:
        response = secure.client.post("/api/v1/sites/north/needs", headers=secure.north,
                                      json={"text": evil, "value_score": 2, "effort": 2})
        assert response.status_code == 201, response.text
        assert db.execute("SELECT text FROM needs WHERE id = %s", (response.json()["id"],)).fetchone()[0] == evil
        token = secure.client.post("/api/v1/tokens", headers=secure.admin, json={"name": evil, "sites": [evil]})
        assert token.status_code in (400, 422), token.text
    assert db.execute("SELECT count(*) FROM telemetry").fetchone()[0] == before


def test_no_plaintext_token_anywhere_in_the_database(secure: SecureApi, db: psycopg.Connection) -> None:
    issued = secure.client.post("/api/v1/tokens", headers=secure.admin, json={"name": "probe", "sites": ["north"]})
    assert issued.status_code == 201
    token = issued.json()["token"]
    for url in ("/api/v1/sites/north", "/api/v1/sites/north/weight-loading/cycles", "/api/v1/sites/south"):
        secure.client.get(url, headers=bearer(token))
    secure.client.get("/api/v1/sites", headers=bearer(ADMIN_TOKEN))
    tables = db.execute("SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables"
                        " WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog',"
                        " 'information_schema')").fetchall()
    found_hash = False
    for (table,) in tables:
        dump = db.execute(f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {table} t").fetchone()[0]
        for secret in (token, secure.north_token, ADMIN_TOKEN, token[3:], ADMIN_TOKEN[3:]):
            assert secret not in dump, f"a plaintext token is stored in {table}"
        found_hash |= hash_token(token) in dump
    assert found_hash, "the token's hash should be what is stored"
    listing = secure.client.get("/api/v1/tokens", headers=secure.admin).text
    assert token not in listing and hash_token(token) not in listing


def test_revoked_and_wrong_site_tokens_cannot_write(secure: SecureApi) -> None:
    before = table_digests(secure.url)
    for method, url, body in (("PUT", "/api/v1/sites/north/services/positioning", {"enabled": False}),
                              ("POST", "/api/v1/tokens", {"name": "escalate", "role": "admin"}),
                              ("DELETE", "/api/v1/tokens/1", None)):
        response = secure.client.request(method, url, headers=secure.north, json=body)
        assert response.status_code == 403, (url, response.text)
    assert table_digests(secure.url) == before
