"""Per-token rate limits (429 + Retry-After) and request body limits (413), on the real app.

``registry.api.ratelimit`` is installed here the way ``create_app`` installs it (``install_limits``);
a fake clock makes the bucket arithmetic exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from microservices.discovery import discover_services
from registry.api.app import create_app
from registry.api.ratelimit import BodySizeLimitMiddleware, RateLimitMiddleware, TokenBuckets, install_limits
from registry.tokens import create_token
from sitepulse.settings import load_settings

from .conftest import ADMIN_TOKEN, SERVICES, bearer, site_yaml


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def limited(database_url: str, mqtt_broker: Any) -> Iterator[tuple[TestClient, Clock, dict[str, str], str]]:
    services = discover_services(SERVICES)
    settings = load_settings(admin_token=ADMIN_TOKEN, load_services=SERVICES, api_rate_per_s=0)
    app = create_app(database_url, mqtt_broker.url, services=services, settings=settings)
    clock = Clock()
    app.add_middleware(RateLimitMiddleware, rate_per_s=2, burst=5, auth_failures_per_min=10, clock=clock)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=64 * 1024)
    with psycopg.connect(database_url, autocommit=True) as conn:
        north = create_token(conn, "north", ["north"]).token
        other = create_token(conn, "north again", ["north"]).token
    with TestClient(app) as client:
        response = client.put("/api/v1/sites/north", content=site_yaml("North", "N1"),
                              headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/yaml"})
        assert response.status_code in (200, 201), response.text
        yield client, clock, bearer(north), other


def test_a_token_over_its_burst_gets_429_with_retry_after(limited) -> None:
    client, clock, north, other = limited
    clock.now += 100
    answers = [client.get("/api/v1/sites/north", headers=north).status_code for _ in range(7)]
    assert answers == [200] * 5 + [429] * 2
    refused = client.get("/api/v1/sites/north", headers=north)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "too many requests" in refused.json()["detail"]
    # another token is not affected, nor are health probes
    assert client.get("/api/v1/sites/north", headers=bearer(other)).status_code == 200
    assert client.get("/healthz").status_code == 200
    clock.now += 1.0  # 2 per second refill
    assert [client.get("/api/v1/sites/north", headers=north).status_code for _ in range(3)] == [200, 200, 429]


def test_refused_requests_do_no_work(limited, db: psycopg.Connection) -> None:
    client, clock, north, _ = limited
    clock.now += 100
    for _ in range(5):
        client.get("/api/v1/sites/north", headers=north)
    before = db.execute("SELECT count(*) FROM needs").fetchone()[0]
    response = client.post("/api/v1/sites/north/needs", headers=north,
                           json={"text": "flood", "value_score": 1, "effort": 1})
    assert response.status_code == 429
    assert db.execute("SELECT count(*) FROM needs").fetchone()[0] == before


def test_made_up_tokens_share_one_failure_budget_per_address(limited) -> None:
    client, clock, north, _ = limited
    clock.now += 1000
    codes = [client.get("/api/v1/sites", headers=bearer(f"sp_guess-{i}")).status_code for i in range(14)]
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
    clock.now += 60  # the failure budget refills over a minute
    assert client.get("/api/v1/sites", headers=north).status_code == 200


def test_token_buckets_stay_bounded() -> None:
    buckets = TokenBuckets(1, 1, max_keys=100)
    for i in range(10_000):
        buckets.take(f"k{i}")
    assert len(buckets) == 100


@pytest.mark.parametrize(("method", "url", "size"), [
    ("POST", "/api/v1/tokens", 200_000),
    ("POST", "/api/v1/sites/north/needs", 70_000),
    ("PUT", "/api/v1/sites/north/services/positioning", 100_000),
])
def test_json_bodies_over_the_limit_are_413(limited, method: str, url: str, size: int) -> None:
    client, clock, _, _ = limited
    clock.now += 100
    body = b'{"text": "' + b"x" * size + b'"}'
    response = client.request(method, url, content=body,
                              headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": "the request body is too large: at most 65536 bytes here"}


def test_a_chunked_body_without_length_is_cut_off(limited) -> None:
    client, clock, _, _ = limited
    clock.now += 100

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'"}'

    response = client.post("/api/v1/tokens", content=chunks(),
                           headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert "too large" in response.json()["detail"]


def test_site_files_keep_their_5_mb_limit(limited) -> None:
    client, clock, _, _ = limited
    clock.now += 100
    big = b"name: x\n" + b"# " + b"x" * (5 * 1024 * 1024) + b"\n"
    response = client.put("/api/v1/sites/north", content=big,
                          headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/yaml"})
    assert response.status_code == 413
    assert response.json()["detail"] == "the request body is too large: at most 5 MB here"
    ok = client.put("/api/v1/sites/north", content=site_yaml("North", "N1") + "#" + "x" * 100_000 + "\n",
                    headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/yaml"})
    assert ok.status_code == 200, ok.text


def _install_once(app: Any, settings: Any) -> None:
    """install_limits unless create_app already did (once registry/api/app.py calls it)."""
    if not any(m.cls is BodySizeLimitMiddleware for m in app.user_middleware):
        install_limits(app, settings)


def test_install_limits_reads_the_settings(database_url: str, mqtt_broker: Any) -> None:
    settings = load_settings(admin_token=ADMIN_TOKEN, load_services=SERVICES, api_rate_per_s=1,
                             api_rate_burst=2, api_max_body_bytes=1000)
    app = create_app(database_url, mqtt_broker.url, services=discover_services(SERVICES), settings=settings)
    _install_once(app, settings)
    with TestClient(app) as client:
        codes = [client.get("/api/v1/sites", headers=bearer(ADMIN_TOKEN)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        big = client.post("/api/v1/tokens", content=b"x" * 2000, headers={"Content-Type": "application/json"})
        assert big.status_code in (413, 429)
    off = load_settings(admin_token=ADMIN_TOKEN, load_services=SERVICES, api_rate_per_s=0)
    app = create_app(database_url, mqtt_broker.url, services=discover_services(SERVICES), settings=off)
    _install_once(app, off)
    with TestClient(app) as client:
        assert {client.get("/api/v1/sites", headers=bearer(ADMIN_TOKEN)).status_code for _ in range(30)} == {200}
