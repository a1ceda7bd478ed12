"""Production mode refuses weak secrets and an anonymous broker, each with one line naming the variable (issue 35:
``changemechangeme``, ``aaaaaaaaaaaaaaaa``, ``password12345678``, 16 spaces, no admin token, a ``postgres``
database password and the anonymous embedded broker were all accepted)."""

from __future__ import annotations

import random
import secrets
import string

import pytest

from sitepulse.errors import ConfigError
from sitepulse.settings import load_settings, weak_secret

GOOD = {"environment": "production", "admin_token": secrets.token_urlsafe(32),
        "database_url": f"postgresql://sitepulse:{secrets.token_urlsafe(24)}@db:5432/sitepulse",
        "mqtt_url": f"mqtt://ingest:{secrets.token_urlsafe(24)}@broker:1883"}


def _refusal(**changes: object) -> str:
    settings = {**GOOD, **changes}
    with pytest.raises(ConfigError) as caught:
        load_settings(**{k: v for k, v in settings.items() if v is not None})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_production_configuration_with_real_secrets_loads() -> None:
    assert load_settings(**GOOD).environment == "production"


@pytest.mark.parametrize("token", ["changemechangeme", "aaaaaaaaaaaaaaaa", "password12345678", " " * 16,
                                   "changeme", "0123456789abcdef", "abababababababababababab", "admin-token-admin-1",
                                   "short-Rand0m", "secret secret secret secret", "\tx9Kq2LmZ8vT4nRbW7"])
def test_a_weak_admin_token_is_refused(token: str) -> None:
    message = _refusal(admin_token=token)
    assert message.startswith("SITEPULSE_ADMIN_TOKEN: is "), message
    assert "token_urlsafe" in message  # says how to make a good one


def test_a_missing_admin_token_is_refused() -> None:
    assert _refusal(admin_token=None).startswith("SITEPULSE_ADMIN_TOKEN: must be set in production")
    assert _refusal(admin_token="").startswith("SITEPULSE_ADMIN_TOKEN: must be set in production")


@pytest.mark.parametrize("password", ["postgres", "POSTGRES", "sitepulse", "password12345678"])
def test_a_default_database_password_is_refused(password: str) -> None:
    message = _refusal(database_url=f"postgresql://sitepulse:{password}@db:5432/sitepulse")
    assert message.startswith("SITEPULSE_DATABASE_URL: has a default or guessable password"), message
    assert password not in message  # never echo the secret


@pytest.mark.parametrize("url", [None, "mqtt://broker:1883", "mqtt://ingest@broker:1883", "mqtt://:pw@broker:1883"])
def test_an_anonymous_or_embedded_broker_is_refused(url: str | None) -> None:
    message = _refusal(mqtt_url=url)
    assert message.startswith("SITEPULSE_MQTT_URL: "), message
    assert ("embedded broker" in message) if url is None else ("anonymous" in message)


def test_development_mode_keeps_its_conveniences() -> None:
    settings = load_settings(environment="development", admin_token="changeme")
    assert settings.mqtt_url is None and settings.admin_token is not None


def test_random_tokens_are_strong() -> None:
    draw = random.Random(35)  # the same draws on every run
    urlsafe = string.ascii_letters + string.digits + "-_"
    tokens = ["".join(draw.choices(urlsafe, k=43)) for _ in range(500)]
    tokens += ["".join(draw.choices("0123456789abcdef", k=32)) for _ in range(500)]
    assert [t for t in tokens if weak_secret(t)] == []
    assert weak_secret("Tr0ub4dor&3-horse-battery-staple") is None
