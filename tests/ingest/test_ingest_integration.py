"""Ingest end to end against a real Mosquitto and a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import orjson
import psycopg
import pytest

from ingest.topics import owner, telemetry_topic
from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.settings import Settings
from tests.conftest import running_worker, wait_until

from .conftest import Publisher, count

NOW = time.time() - 3600


def sample(i: int, **fields: object) -> dict:
    return {"ts": NOW + i, "seq": i, "lat": -33.0, "lon": 151.0, "payload_kg": 1000.0, **fields}


def test_every_valid_sample_is_stored_once_with_duplicates_and_republishes(
    ingest_settings: Settings, publisher: Publisher, site_id: str
) -> None:
    url = ingest_settings.database_url.get_secret_value()
    topic = telemetry_topic(site_id, "m1")
    singles = [(topic, orjson.dumps(sample(i))) for i in range(1500)]
    arrays = [
        (telemetry_topic(site_id, "m2"), orjson.dumps([sample(i * 10 + k) for k in range(10)])) for i in range(100)
    ]
    duplicates = singles[:200] + [(topic, orjson.dumps(sample(5, extra_field="same key, stored once")))]
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute("LISTEN sitepulse_telemetry")
        with running_worker(ingest_settings) as worker:
            publisher.publish(singles + arrays + duplicates)
            assert wait_until(lambda: count(url, "SELECT count(*) FROM telemetry") >= 2500, 30)
            publisher.publish(singles[:300])  # a device re-sending after a reconnect
            assert wait_until(lambda: worker.counters.received_messages >= 1801 + 300, 30)
        notes = list(listener.notifies(timeout=1, stop_after=1))
    assert count(url, "SELECT count(*) FROM telemetry") == 2500
    assert count(url, "SELECT count(*) FROM (SELECT DISTINCT site_id, machine_id, ts, seq FROM telemetry) d") == 2500
    assert count(url, "SELECT count(*) FROM ingest_rejects") == 0
    assert worker.counters.duplicate_rows == 501
    assert notes and site_id in notes[0].payload.split(",")


def test_invalid_input_lands_in_rejects_with_its_reason(
    ingest_settings: Settings, publisher: Publisher, site_id: str
) -> None:
    url = ingest_settings.database_url.get_secret_value()
    topic = telemetry_topic(site_id, "m1")
    bad = [
        (topic, b"{not json"),
        (topic, orjson.dumps(sample(1, lat=91.2))),
        (topic, orjson.dumps([sample(2), sample(3, lon=181.0), sample(4, machine_id="X")])),
        (topic, b"x" * 300_000),
        (f"sites/{site_id}/machines/bad id/telemetry", orjson.dumps(sample(5))),
        (topic, orjson.dumps({"ts": NOW * 100})),
    ]
    with running_worker(ingest_settings):
        publisher.publish(bad)
        assert wait_until(lambda: count(url, "SELECT count(*) FROM ingest_rejects") >= 7, 20)
        publisher.publish(bad)  # re-delivered rejects are stored once
        time.sleep(0.5)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT topic, reason, site_id, payload FROM ingest_rejects ORDER BY id").fetchall()
    reasons = [r[1] for r in rows]
    assert len(rows) == 7, reasons
    assert reasons[0].startswith("not valid JSON")
    assert reasons[1] == "lat 91.2 is outside -90..90"
    assert reasons[2] == "sample 1: lon 181 is outside -180..180"
    assert reasons[3] == "sample 2: machine_id 'X' in the payload disagrees with topic machine 'm1'"
    assert reasons[4] == "payload is 300000 bytes, over the 262144-byte limit"
    assert "machine_id 'bad id'" in reasons[5] and rows[5][2] is None
    assert "more than 1 day in the future" in reasons[6]
    assert bytes(rows[0][3]) == b"{not json"
    assert count(url, "SELECT count(*) FROM telemetry") == 1  # sample 2 of the array


def test_birth_and_status_upsert_the_machine_registry(
    ingest_settings: Settings, publisher: Publisher, site_id: str
) -> None:
    url = ingest_settings.database_url.get_secret_value()
    base = f"sites/{site_id}/machines/haul1"
    # retained before ingest ever ran: delivered when it subscribes
    publisher.publish(
        [(f"{base}/birth", orjson.dumps({"kind": "hauler", "model": "777G", "rated_payload_kg": 90700, "axles": 2}))],
        retain=True,
    )
    publisher.publish([(f"{base}/status", b"online")], retain=True)
    with running_worker(ingest_settings):
        assert wait_until(lambda: count(url, "SELECT count(*) FROM machines WHERE status = 'online'") == 1, 20)
        publisher.publish(
            [(f"{base}/birth", orjson.dumps({"kind": "hauler", "model": "785D", "rated_payload_kg": 136000}))],
            retain=True,
        )
        publisher.publish([(f"{base}/status", b"offline")], retain=True)
        assert wait_until(lambda: count(url, "SELECT count(*) FROM machines WHERE status = 'offline'") == 1, 20)
        assert wait_until(lambda: count(url, "SELECT count(*) FROM machines WHERE model = '785D'") == 1, 20)
    with psycopg.connect(url) as conn:
        kind, rated, attributes = conn.execute(
            "SELECT kind, rated_payload_kg, attributes FROM machines WHERE machine_id = 'haul1'"
        ).fetchone()
    assert (kind, rated, attributes) == ("hauler", 136000.0, {})


def test_acks_reach_the_broker_so_a_restart_receives_nothing_again(
    ingest_settings: Settings, publisher: Publisher, site_id: str
) -> None:
    url = ingest_settings.database_url.get_secret_value()
    with running_worker(ingest_settings) as first:
        publisher.publish([(telemetry_topic(site_id, "m1"), orjson.dumps(sample(i))) for i in range(3000)])
        assert wait_until(lambda: first.counters.acked_messages == 3000, 30)
    with running_worker(ingest_settings) as second:
        publisher.publish([(telemetry_topic(site_id, "m1"), orjson.dumps(sample(5000)))])
        assert wait_until(lambda: second.counters.received_messages >= 1, 20)
        time.sleep(0.3)
    assert second.counters.received_messages == 1 and second.counters.duplicate_rows == 0
    assert count(url, "SELECT count(*) FROM telemetry") == 3001


def test_two_workers_split_the_stream_by_machine_without_loss_or_double_storage(
    ingest_settings: Settings, broker: EmbeddedBroker, publisher: Publisher, site_id: str
) -> None:
    """``--workers 2``: two plain persistent sessions, each storing exactly the machines it owns."""
    url = ingest_settings.database_url.get_secret_value()
    env = {
        **os.environ,
        "SITEPULSE_DATABASE_URL": url,
        "SITEPULSE_MQTT_URL": broker.url,
        "SITEPULSE_INGEST_CLIENT_ID": ingest_settings.ingest_client_id,
        "SITEPULSE_INGEST_BATCH_MS": "50",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    messages = [(telemetry_topic(site_id, f"m{i % 40}"), orjson.dumps(sample(i))) for i in range(6000)]
    owned = Counter(owner(topic, 2) for topic, _ in messages)
    try:
        assert wait_until(lambda: count(url, "SELECT count(*) FROM ingest_worker_stats") == 2, 30)
        publisher.publish(messages)
        assert wait_until(lambda: count(url, "SELECT count(*) FROM telemetry") == 6000, 60)
        assert wait_until(lambda: _acked_total(url) == 2 * 6000, 20)  # every session acks every message
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err.decode()[-2000:]
    with psycopg.connect(url) as conn:
        stats = {worker.rsplit(":", 1)[1]: counters
                 for worker, counters in conn.execute("SELECT worker_id, counters FROM ingest_worker_stats")}
    assert sorted(stats) == ["0", "1"] and min(owned.values()) > 0, (stats, owned)
    for index, s in stats.items():  # each worker stored its own machines and only those
        assert s["stored_rows"] == s["received_messages"] == owned[int(index)], (index, s, owned)
        assert s["other_partition_messages"] == 6000 - owned[int(index)], (index, s)
        assert s["duplicate_rows"] == 0
    assert count(url, "SELECT count(*) FROM (SELECT DISTINCT site_id, machine_id, ts, seq FROM telemetry) d") == 6000


def test_a_worker_given_two_partition_rules_stores_what_either_owns(
    ingest_settings: Settings, publisher: Publisher, site_id: str
) -> None:
    """``0/2,1/3`` (the number of workers changing from 2 to 3): the union of both shares, nothing else."""
    url = ingest_settings.database_url.get_secret_value()
    messages = [(telemetry_topic(site_id, f"m{i % 40}"), orjson.dumps(sample(i))) for i in range(2000)]
    mine = sum(1 for topic, _ in messages if owner(topic, 2) == 0 or owner(topic, 3) == 1)
    assert 1000 < mine < 2000
    with running_worker(ingest_settings.model_copy(update={"ingest_partition": "0/2,1/3"})) as worker:
        publisher.publish(messages)
        assert wait_until(lambda: worker.counters.received_messages + worker.counters.other_partition_messages
                          == 2000, 30)
    assert worker.counters.stored_rows == worker.counters.received_messages == mine
    assert count(url, "SELECT count(*) FROM telemetry") == mine


def _acked_total(url: str) -> int:
    with psycopg.connect(url) as conn:
        return sum(c["acked_messages"] for (c,) in conn.execute("SELECT counters FROM ingest_worker_stats"))


@pytest.mark.parametrize("split", ["partitions", "shared"])
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_both_protocols_split_the_stream_through_the_lean_receive_path(
    ingest_settings: Settings, publisher: Publisher, site_id: str, protocol: str, split: str
) -> None:
    """Partitions and Mosquitto's $share work for 3.1.1 clients too; the lean PUBLISH path carries the load."""
    url = ingest_settings.database_url.get_secret_value()
    singles = [(telemetry_topic(site_id, f"m{i % 7}"), orjson.dumps(sample(i))) for i in range(1000)]
    arrays = [
        (telemetry_topic(site_id, "a1"), orjson.dumps([sample(10_000 + i * 10 + k) for k in range(10)]))
        for i in range(100)
    ]
    if split == "shared":
        first_settings = second_settings = ingest_settings.model_copy(update={"ingest_shared": True})
    else:
        first_settings, second_settings = (ingest_settings.model_copy(update={"ingest_partition": f"{i}/2"})
                                           for i in range(2))
        assert {owner(t, 2) for t, _ in singles + arrays} == {0, 1}
    with (running_worker(first_settings, 0, protocol) as first,
          running_worker(second_settings, 1, protocol) as second):
        assert first.consumer.version == second.consumer.version == protocol
        publisher.publish(singles + arrays)
        assert wait_until(lambda: count(url, "SELECT count(*) FROM telemetry") == 2000, 30)
        lean = [w.consumer._client.lean_received for w in (first, second)]
    assert all(n > 0 for n in lean), lean
    assert first.counters.stored_rows > 0 and second.counters.stored_rows > 0  # the load was split
    assert first.counters.stored_rows + second.counters.stored_rows == 2000
    assert count(url, "SELECT count(*) FROM ingest_rejects") == 0
