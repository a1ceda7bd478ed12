"""One settings object for every process, read from SITEPULSE_* variables and an optional file.

Precedence (highest first): environment variables, the config file named by
``SITEPULSE_CONFIG_FILE`` (or ``./sitepulse.toml`` when present), the defaults below.
"""

from __future__ import annotations

import math
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sitepulse.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("sitepulse.toml")
MIN_SECRET_BITS = 64
# words and defaults that make a secret guessable wherever they appear in it
PLACEHOLDERS = ("changeme", "change-me", "change_me", "password", "passw0rd", "secret", "admin", "token", "default",
                "example", "sitepulse", "letmein", "qwerty", "asdf", "test", "dummy", "placeholder", "xxx")
DEFAULT_PASSWORDS = frozenset({"postgres", "sitepulse", "timescale", "timescaledb", "password", "root", ""})


def weak_secret(secret: str) -> str | None:
    """Why ``secret`` would be guessed, or None.

    What remains after dropping placeholder words, repeated characters and runs like ``1234``/``abcd`` must carry
    at least ``MIN_SECRET_BITS`` (length x log2 of the character classes it uses) in at least 8 distinct
    characters; ``secrets.token_urlsafe(32)`` carries about 250.
    """
    if any(c.isspace() for c in secret):
        return "contains whitespace"
    if len(secret) < 16:
        return "shorter than 16 characters"
    rest = secret.lower()
    for word in PLACEHOLDERS:
        rest = rest.replace(word, "")
    kept: list[str] = []
    for char in rest:  # drop a character repeating, or counting on from, the one before
        if kept and ord(char) - ord(kept[-1]) in (0, 1, -1):
            kept[-1] = char
            continue
        kept.append(char)
    rest = "".join(kept)
    original = {c for c in secret if c.lower() in rest}
    classes = (26 if any(c.islower() for c in original) else 0) + (26 if any(c.isupper() for c in original) else 0)
    classes += (10 if any(c.isdigit() for c in rest) else 0) + (33 if any(not c.isalnum() for c in rest) else 0)
    bits = len(rest) * math.log2(classes) if classes > 1 else 0.0
    if bits < MIN_SECRET_BITS or len(set(rest)) < 8:
        return "a placeholder or too predictable (repeats, sequences or common words)"
    return None


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the optional TOML config file; keys are the field names without the prefix."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._values = _read_config_file()

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


def config_file_path() -> Path | None:
    """The config file in force, if any."""
    named = os.environ.get("SITEPULSE_CONFIG_FILE")
    if named:
        return Path(named)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def _read_config_file() -> dict[str, Any]:
    path = config_file_path()
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("SITEPULSE_CONFIG_FILE", f"no such file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("SITEPULSE_CONFIG_FILE", f"{path} is not valid TOML: {exc}") from None
    return data.get("sitepulse", data)


def partition_spec(text: str) -> list[tuple[int, int]]:
    """``"i/N"`` or, while the number of workers changes, ``"i/N,j/M"`` as (index, count) pairs, duplicates
    dropped; ValueError naming the part that is not INDEX/COUNT with 0 <= INDEX < COUNT <= 1024."""
    specs: dict[tuple[int, int], None] = {}
    for part in text.split(","):
        index, slash, count = part.strip().partition("/")
        if not slash or not (index + count).isascii() or not index.isdigit() or not count.isdigit():
            raise ValueError(f"{part[:40]!r} is not INDEX/COUNT, e.g. 0/3")
        if not 0 < int(count) <= 1024 or int(index) >= int(count):
            raise ValueError(f"{part[:40]!r}: COUNT must be 1..1024 and INDEX 0..COUNT-1")
        specs[(int(index), int(count))] = None
    return list(specs)


class Settings(BaseSettings):
    """Effective configuration; unset URLs mean 'start the embedded server'."""

    model_config = SettingsConfigDict(env_prefix="SITEPULSE_", extra="ignore")

    database_url: SecretStr | None = Field(
        None, description="PostgreSQL/TimescaleDB URL; unset starts embedded PostgreSQL"
    )
    mqtt_url: SecretStr | None = Field(
        None, description="mqtt://[user:pass@]host:port; unset starts Mosquitto as a child process"
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path(".sitepulse")
    admin_token: SecretStr | None = None
    environment: str = Field("development", description="development | production")
    log_level: str = "INFO"
    log_format: str = Field("text", description="text | json")
    embedded_db_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    embedded_mqtt_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    api_rate_per_s: float = Field(20.0, ge=0, description="requests per second per token; 0 switches it off")
    api_rate_burst: int = Field(200, ge=1, description="requests a token may send at once")
    api_max_body_bytes: int = Field(1024 * 1024, ge=1, description="request body limit (site files: 5 MB)")
    map_tiles_url: str | None = Field(
        None, description="optional raster background for the dashboard map, an XYZ tile URL template"
        " ({z}/{x}/{y}); unset draws the site file alone (no tile server needed)"
    )
    map_tiles_attribution: str = Field("", description="attribution shown with the map background")
    webhook_approved_hosts: str | None = Field(
        None, description="comma-separated host or host:port that alarm webhooks may reach on private, loopback"
        " or link-local addresses (approved by an admin); any other webhook goes to public addresses only")
    # scheduled reports (registry/shift_reports, docs/REPORTS.md)
    smtp_host: str | None = Field(None, description="SMTP server that sends scheduled reports; unset sends no e-mail")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_tls: str = Field("starttls", description="starttls | ssl (implicit TLS, port 465) | none (loopback only)")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field("sitepulse@localhost", description="From address of report e-mails")
    smtp_ca_file: Path | None = Field(None, description="CA bundle for the SMTP server's certificate (default: system)")
    reports_link_base: str = Field("http://127.0.0.1:8000", description="base URL of the API in report e-mails' links")
    reports_poll_s: float = Field(15.0, gt=0, description="how often the report scheduler looks for ended periods")
    reports_retry_wait_s: float = Field(2.0, ge=0, description="first wait between delivery tries (doubles, 3 tries)")
    # ingest
    ingest_batch_rows: int = Field(5000, ge=1)
    ingest_batch_ms: int = Field(200, ge=1)
    ingest_max_payload_bytes: int = Field(256 * 1024, ge=1)
    ingest_client_id: str = "sitepulse-ingest"
    ingest_shared: bool | None = Field(
        None, description="split the telemetry between workers with a shared subscription ($share/sitepulse-ingest)"
        " instead of partitions; loses the messages published between a Mosquitto 2.0 restart and the workers'"
        " re-subscription (docs/RELIABILITY.md), so only for a broker that keeps shared subscriptions")
    ingest_partition: str | None = Field(
        None, description="INDEX/COUNT, e.g. 0/3: this worker is one of COUNT started separately, each with a plain"
        " persistent subscription, and stores the machines whose crc32(site/machine) mod COUNT is INDEX;"
        " `--workers N` sets it for its N workers. While COUNT changes, INDEX/COUNT,INDEX/NEW stores both"
        " (docs/DEPLOYMENT.md)")
    ingest_sites: str | None = Field(
        None, description="comma-separated site ids, the same list for every worker: worker INDEX/COUNT subscribes"
        " to the sites at positions INDEX, INDEX+COUNT, ... only (sites/{site}/machines/+/...), so the broker"
        " routes each site's messages to one worker's persistent session (docs/DEPLOYMENT.md)")
    ingest_amqp_url: SecretStr | None = Field(
        None, description="amqp://user:pass@host:5672/vhost: ingest from RabbitMQ queues instead of MQTT subscriptions"
        " (devices publish MQTT to RabbitMQ's MQTT plugin; a consistent-hash exchange gives each machine's messages"
        " to one quorum queue per worker, acked after the database commit; docs/DEPLOYMENT.md)")
    ingest_amqp_queues: int = Field(1, ge=1, le=256, description="number of RabbitMQ ingest queues (= workers)")
    # decoders in front of ingest (decoders/README.md)
    decoders_file: Path | None = Field(
        None, description="TOML file naming which decoder reads which MQTT topics or HTTP feeds, per site")
    load_decoders: str | None = Field(None, description="comma-separated decoder names to load")
    # services
    load_services: str | None = Field(None, description="comma-separated service names to load")
    trace_services: bool = False

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, value: str) -> str:
        if value not in {"development", "production"}:
            raise ValueError("must be 'development' or 'production'")
        return value

    @field_validator("ingest_partition")
    @classmethod
    def _partition_spec(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return ",".join(f"{index}/{count}" for index, count in partition_spec(value))

    @field_validator("smtp_tls")
    @classmethod
    def _known_smtp_tls(cls, value: str) -> str:
        if value not in {"starttls", "ssl", "none"}:
            raise ValueError("must be 'starttls', 'ssl' or 'none'")
        return value

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        if value not in {"text", "json"}:
            raise ValueError("must be 'text' or 'json'")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            scheme = urlsplit(value.get_secret_value()).scheme
            if scheme not in {"postgresql", "postgres"}:
                raise ValueError(f"scheme must be postgresql://, not {scheme or 'missing'}://")
        return value or None

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in {"mqtt", "mqtts", "tcp"}:
                raise ValueError(f"scheme must be mqtt:// or mqtts://, not {parts.scheme or 'missing'}://")
            if not parts.hostname:
                raise ValueError("has no host")
        return value or None

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        """Production refuses what lets a stranger in: no or a guessable admin token, a default database
        password, a broker any client may use without credentials. Each refusal is one line naming the variable."""
        if self.environment != "production":
            return self
        if self.admin_token is None or not self.admin_token.get_secret_value():
            raise ValueError("SITEPULSE_ADMIN_TOKEN must be set in production (e.g. python3 -c 'import secrets;"
                             " print(secrets.token_urlsafe(32))')")
        if problem := weak_secret(self.admin_token.get_secret_value()):
            raise ValueError(f"SITEPULSE_ADMIN_TOKEN is {problem}; use a random token, e.g. python3 -c 'import"
                             " secrets; print(secrets.token_urlsafe(32))'")
        if self.database_url is not None:
            password = urlsplit(self.database_url.get_secret_value()).password
            if password is not None and (password.lower() in DEFAULT_PASSWORDS or weak_secret(password)):
                raise ValueError("SITEPULSE_DATABASE_URL has a default or guessable password; production needs a"
                                 " random one")
        if self.mqtt_url is None:
            raise ValueError("SITEPULSE_MQTT_URL must be set in production: the embedded broker is for one machine"
                             " (loopback, no TLS, no restart of its own); use a broker with per-site credentials"
                             " and ACLs (docs/DEPLOYMENT.md)")
        parts = urlsplit(self.mqtt_url.get_secret_value())
        if not parts.username or not parts.password:
            raise ValueError("SITEPULSE_MQTT_URL has no user and password: production refuses an anonymous broker"
                             " connection (mqtt://user:password@host:1883)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))

    def masked(self) -> dict[str, str]:
        """Every setting as text, secrets and URL passwords masked, for printing."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith("_url") and value is not None:
                shown[name] = mask_url(value.get_secret_value())
            elif isinstance(value, SecretStr):
                shown[name] = "********"
            else:
                shown[name] = "" if value is None else str(value)
        return shown


def mask_url(url: str) -> str:
    """The URL with its password replaced by ****, so it can be logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:****@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning a validation failure into one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["loc"]:
            raise ConfigError(f"SITEPULSE_{str(first['loc'][0]).upper()}", message) from None
        setting, _, problem = message.partition(" ")
        raise ConfigError(setting, problem) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this process, read once."""
    return load_settings()
