"""Nothing is lost when ingest is killed mid-stream or PostgreSQL goes away for 10 seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from ingest.topics import telemetry_topic
from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade
from sitepulse.settings import Settings, load_settings
from tests.conftest import running_worker, wait_until

from .conftest import Publisher, count

NOW = time.time() - 3600


def stream(publisher: Publisher, site_id: str, n: int, per_second: float) -> threading.Thread:
    """Publish n samples (QoS 1) at about per_second in the background."""

    def run() -> None:
        chunk = max(1, int(per_second / 20))
        for start in range(0, n, chunk):
            publisher.publish(
                [
                    (telemetry_topic(site_id, f"m{i % 5}"), orjson.dumps({"ts": NOW + i, "seq": i, "lat": 1.0}))
                    for i in range(start, min(n, start + chunk))
                ]
            )
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def start_ingest(url: str, broker: EmbeddedBroker, client_id: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "SITEPULSE_DATABASE_URL": url,
        "SITEPULSE_MQTT_URL": broker.url,
        "SITEPULSE_INGEST_CLIENT_ID": client_id,
        "SITEPULSE_INGEST_BATCH_MS": "50",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def test_kill_9_mid_stream_and_restart_loses_nothing(
    ingest_settings: Settings, broker: EmbeddedBroker, publisher: Publisher, site_id: str
) -> None:
    url = ingest_settings.database_url.get_secret_value()
    total = 20_000
    first = start_ingest(url, broker, ingest_settings.ingest_client_id)
    try:
        assert wait_until(lambda: count(url, "SELECT count(*) FROM ingest_worker_stats") == 1, 20)
        feeder = stream(publisher, site_id, total, per_second=8000)
        assert wait_until(lambda: count(url, "SELECT count(*) FROM telemetry") > 3000, 30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    stored_at_kill = count(url, "SELECT count(*) FROM telemetry")
    second = start_ingest(url, broker, ingest_settings.ingest_client_id)
    try:
        feeder.join(60)
        assert wait_until(lambda: count(url, "SELECT count(*) FROM telemetry") >= total, 60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert stored_at_kill < total, "the kill should land mid-stream"
    assert count(url, "SELECT count(*) FROM telemetry") == total
    assert count(url, "SELECT count(DISTINCT seq) FROM telemetry") == total
    assert count(url, "SELECT count(*) FROM ingest_rejects") == 0


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL server this test may stop and start (not the session's)."""
    server = EmbeddedPostgres(tmp_path / "pg", fast_unsafe=True)
    server.start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE outage")
    url = server.url_for("outage")
    with psycopg.connect(url, autocommit=True) as conn:
        upgrade(conn)
    yield server, url
    server.destroy()


def test_postgres_down_for_10_seconds_mid_stream_loses_nothing(
    own_postgres: tuple[EmbeddedPostgres, str], broker: EmbeddedBroker, publisher: Publisher, site_id: str
) -> None:
    server, url = own_postgres
    settings = load_settings(database_url=url, mqtt_url=broker.url, ingest_client_id="outage", ingest_batch_ms=50)
    total = 15_000
    with running_worker(settings) as worker:
        feeder = stream(publisher, site_id, total, per_second=3000)
        assert wait_until(lambda: count(url, "SELECT count(*) FROM telemetry") > 1500, 30)
        server.stop("fast")
        down_at = time.monotonic()
        time.sleep(10)
        stored_while_down = worker.counters.stored_rows
        server.start()
        assert time.monotonic() - down_at >= 10
        feeder.join(60)
        assert wait_until(lambda: count(url, "SELECT count(*) FROM telemetry") >= total, 60)
        assert worker.counters.db_errors > 0
    assert stored_while_down < total, "the outage should land mid-stream"
    assert count(url, "SELECT count(*) FROM telemetry") == total
    assert count(url, "SELECT count(DISTINCT seq) FROM telemetry") == total
