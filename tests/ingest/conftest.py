"""Ingest test helpers: a broker per test (no lingering persistent sessions), a worker in a thread."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.errors import SitePulseError
from sitepulse.settings import Settings, load_settings


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A Mosquitto of this test's own: persistent sessions from other tests cannot steal messages."""
    server = EmbeddedBroker(tmp_path / "mqtt")
    try:
        server.start()
    except SitePulseError as exc:
        pytest.fail(f"ingest tests need a real MQTT broker: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def site_id(request: pytest.FixtureRequest) -> str:
    """A site id unique to this test (ingest topics must match sites/+/machines/+/...)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[-60:]


@pytest.fixture
def ingest_settings(fresh_database_url: str, broker: EmbeddedBroker, site_id: str) -> Settings:
    return load_settings(
        database_url=fresh_database_url,
        mqtt_url=broker.url,
        ingest_client_id=f"ingest-{site_id}"[:60],
        ingest_batch_ms=50,
    )


def count(url: str, sql: str, *params: object) -> int:
    with psycopg.connect(url, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchone()[0]


class Publisher:
    """A QoS 1 paho publisher that waits for every PUBACK."""

    def __init__(self, broker: EmbeddedBroker, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, messages: Iterable[tuple[str, bytes | str]], retain: bool = False) -> int:
        infos = []
        for topic, payload in messages:
            infos.append(self.client.publish(topic, payload, qos=1, retain=retain))
            if len(infos) >= 10_000:
                for info in infos:
                    info.wait_for_publish(30)
                infos.clear()
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
        return len(infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: EmbeddedBroker) -> Iterator[Publisher]:
    pub = Publisher(broker)
    yield pub
    pub.close()
