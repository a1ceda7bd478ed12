"""Security headers on every response of the API and the dashboard (issue 35: none were sent).

The browser half -- the dashboard works under this policy with no violation -- is
tests/security/test_dashboard_xss.py and tests/browser/test_dashboard.py.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from fastapi.testclient import TestClient

from registry.api.headers import dashboard_policy, tile_source
from tests.security.conftest import SecureApi

EXPECTED = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def _directives(policy: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in policy.split(";")) if d}


@pytest.mark.parametrize(("method", "path", "who"), [
    ("GET", "/", None), ("GET", "/static/app.js", None), ("GET", "/static/map.js", None),
    ("GET", "/healthz", None), ("GET", "/openapi.json", None), ("GET", "/api/v1/sites", "admin"),
    ("GET", "/api/v1/sites", None),  # 401
    ("GET", "/api/v1/sites/nowhere", "admin"),  # 404
    ("GET", "/api/v1/sites/north/kpis?to=not-a-date", "admin"),  # 422
    ("GET", "/no/such/route", None),
    ("PUT", "/api/v1/sites/x", "admin"),  # 413 from the body limit, before any route
])
def test_every_response_carries_the_security_headers(secure: SecureApi, method: str, path: str,
                                                     who: str | None) -> None:
    headers = secure.admin if who else {}
    body = b"x" * (6 * 1024 * 1024) if method == "PUT" else None
    response = secure.client.request(method, path, headers=headers, content=body)
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (path, response.status_code, dict(response.headers))
    policy = _directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"], policy  # no inline script, no eval, no other origin
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["style-src"] and policy["base-uri"] == ["'none'"]
    assert len(response.headers.get_list("content-security-policy")) == 1


def test_an_unhandled_error_carries_the_headers_too(secure: SecureApi) -> None:
    def boom() -> None:
        raise RuntimeError("a bug")

    secure.app.add_api_route("/api/v1/test-boom", boom)
    response = TestClient(secure.app, raise_server_exceptions=False).get("/api/v1/test-boom")
    assert response.status_code == 500 and "a bug" not in response.text
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_the_dashboard_page_has_no_inline_script_or_style(secure: SecureApi) -> None:
    page = secure.client.get("/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline <script> would be blocked by script-src 'self'"
    assert "<style" not in page and " style=" not in page and not re.search(r"\son[a-z]+=", page)


def test_the_api_docs_run_only_their_own_inline_script(secure: SecureApi) -> None:
    for path in ("/docs", "/redoc"):
        response = secure.client.get(path)
        assert response.status_code == 200 and response.headers["x-frame-options"] == "DENY"
        policy = _directives(response.headers["content-security-policy"])
        inline = re.findall(r"<script>(.*?)</script>", response.text, re.S)
        hashes = {"'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in inline}
        assert hashes <= set(policy["script-src"]) and "'unsafe-inline'" not in policy["script-src"]
        assert int(response.headers["content-length"]) == len(response.content)


def test_a_configured_tile_server_may_serve_images_only() -> None:
    assert tile_source("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png") == "https://*.tile.openstreetmap.org"
    assert tile_source("https://tiles.example.com/{z}/{x}/{y}.png") == "https://tiles.example.com"
    assert tile_source("javascript:alert(1)") is None and tile_source(None) is None
    policy = _directives(dashboard_policy("https://tiles.example.com/{z}/{x}/{y}.png"))
    assert "https://tiles.example.com" in policy["img-src"] and policy["script-src"] == ["'self'"]
    assert "https://tiles.example.com" not in policy["connect-src"]
