"""Settings: environment over config file over defaults; bad values name the variable."""

from pathlib import Path

import pytest

from sitepulse.errors import ConfigError
from sitepulse.settings import load_settings, mask_url


def test_defaults_mean_embedded_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.database_url is None and settings.mqtt_url is None
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert settings.ingest_batch_rows == 5000 and settings.ingest_batch_ms == 200


def test_environment_beats_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "sitepulse.toml"
    config.write_text('api_port = 9100\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("SITEPULSE_CONFIG_FILE", str(config))
    monkeypatch.setenv("SITEPULSE_API_PORT", "9200")
    settings = load_settings()
    assert settings.api_port == 9200
    assert settings.log_level == "DEBUG"


def test_missing_config_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEPULSE_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="SITEPULSE_CONFIG_FILE: no such file"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SITEPULSE_DATABASE_URL", "mysql://db/x", "scheme must be postgresql://"),
        ("SITEPULSE_MQTT_URL", "http://broker:1883", "scheme must be mqtt://"),
        ("SITEPULSE_API_PORT", "eighty", "valid integer"),
        ("SITEPULSE_API_PORT", "70000", "less than or equal to 65535"),
        ("SITEPULSE_ENVIRONMENT", "staging", "must be 'development' or 'production'"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(variable + ":")
    assert message in str(caught.value)


def test_placeholder_admin_token_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEPULSE_ENVIRONMENT", "production")
    monkeypatch.setenv("SITEPULSE_ADMIN_TOKEN", "changeme")
    with pytest.raises(ConfigError, match="SITEPULSE_ADMIN_TOKEN"):
        load_settings()


def test_masked_output_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEPULSE_DATABASE_URL", "postgresql://app:hunter2@db:5432/sitepulse")
    monkeypatch.setenv("SITEPULSE_ADMIN_TOKEN", "s3cret-admin-token")
    shown = load_settings().masked()
    assert shown["database_url"] == "postgresql://app:****@db:5432/sitepulse"
    assert shown["admin_token"] == "********"
    assert "hunter2" not in str(shown) and "s3cret" not in str(shown)


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert mask_url("mqtt://broker:1883") == "mqtt://broker:1883"
