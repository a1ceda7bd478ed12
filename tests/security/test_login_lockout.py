"""Failed logins from one address never lock a valid token out of it (issue 35: 60 made-up tokens from 127.0.0.1,
then the admin token from 127.0.0.1 got 429; a site behind one NAT could be locked out by anyone)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from registry.api.app import create_app
from registry.api.ratelimit import DEFAULT_AUTH_FAILURES_PER_MIN
from registry.tokens import create_token, revoke_token
from sitepulse.settings import load_settings

from .conftest import ADMIN_TOKEN, bearer

GUESSES = int(DEFAULT_AUTH_FAILURES_PER_MIN) + 10


@pytest.fixture
def locked_out(database_url: str, mqtt_broker: Any) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app as deployed (its own rate limiter), after an attacker at the test client's address has spent the
    address's failure budget on made-up tokens; yields the client and fresh site tokens never used before."""
    settings = load_settings(admin_token=ADMIN_TOKEN, load_services="", api_rate_per_s=20)
    app = create_app(database_url, mqtt_broker.url, services={}, settings=settings)
    with psycopg.connect(database_url, autocommit=True) as conn:
        fresh = create_token(conn, "north manager", ["north"])
        revoked = create_token(conn, "north former", ["north"])
        revoke_token(conn, revoked.id)
    with TestClient(app) as client:
        codes = [client.get("/api/v1/sites", headers=bearer(f"sp_guess-{i}")).status_code for i in range(GUESSES)]
        assert set(codes[:int(DEFAULT_AUTH_FAILURES_PER_MIN)]) == {401} and codes[-1] == 429, codes
        yield client, {"fresh": fresh.token, "revoked": revoked.token}


def test_a_valid_token_passes_an_address_locked_by_failures(locked_out: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = locked_out
    assert client.get("/api/v1/sites", headers=bearer(ADMIN_TOKEN)).status_code == 200  # the bootstrap admin
    assert client.get("/api/v1/sites", headers=bearer(tokens["fresh"])).status_code == 200  # first use, looked up
    for _ in range(5):  # and stays usable
        assert client.get("/api/v1/me", headers=bearer(tokens["fresh"])).status_code == 200


def test_invalid_tokens_and_anonymous_requests_stay_held_back(locked_out: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = locked_out
    assert client.get("/api/v1/sites", headers=bearer("sp_guess-again")).status_code == 429
    assert client.get("/api/v1/sites", headers=bearer(tokens["revoked"])).status_code == 429
    assert client.get("/api/v1/sites").status_code == 429
    refused = client.get("/api/v1/sites", headers=bearer("sp_guess-more"))
    assert refused.headers["Retry-After"] and "too many requests" in refused.json()["detail"]


def test_a_valid_token_keeps_its_own_rate_limit(locked_out: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = locked_out
    codes = [client.get("/api/v1/me", headers=bearer(ADMIN_TOKEN)).status_code for _ in range(500)]
    assert 429 in codes and codes.index(429) >= 200, codes  # burst 200 at 20/s: still limited, per token
