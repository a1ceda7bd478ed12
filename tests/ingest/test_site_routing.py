"""Site-routed workers (SITEPULSE_INGEST_SITES): Mosquitto gives each site's messages to one worker's
persistent session; nothing is lost or stored twice across a worker's kill -9 and a broker restart.
Real Mosquitto (the shipped persistence settings), real PostgreSQL, workers as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from ingest.topics import Partition, assigned_sites, telemetry_topic
from sitepulse.embedded.broker import EmbeddedBroker
from tests.conftest import stop_processes, wait_until

from .conftest import Publisher, count

ROOT = Path(__file__).resolve().parents[2]
SITES = ("north", "south", "east", "west")
NOW = time.time() - 600


def test_sites_fall_to_workers_by_position() -> None:
    listed = "a,b,c,d,e"
    assert assigned_sites(listed, (Partition(0, 2),)) == ("a", "c", "e")
    assert assigned_sites(listed, (Partition(1, 2),)) == ("b", "d")
    assert assigned_sites(listed, ()) == ("a", "b", "c", "d", "e")
    assert assigned_sites(listed, (Partition(1, 2), Partition(2, 3))) == ("b", "c", "d")  # while N changes
    for bad, reason in (("a,a", "twice"), ("a,b/c", "not 1-64"), (" , ", "names no site"), ("a,+", "not 1-64")):
        with pytest.raises(ValueError, match=reason):
            assigned_sites(bad, ())


def _worker(url: str, broker: EmbeddedBroker, index: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SITEPULSE_DATABASE_URL": url, "SITEPULSE_MQTT_URL": broker.url,
           "SITEPULSE_INGEST_SITES": ",".join(SITES), "SITEPULSE_INGEST_PARTITION": f"{index}/2",
           "SITEPULSE_INGEST_CLIENT_ID": f"routed-{index}", "SITEPULSE_INGEST_BATCH_MS": "50",
           "SITEPULSE_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "ingest"], cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115


def _messages(first: int, n: int) -> list[tuple[str, bytes]]:
    """Message i: site i % 4, machine i % 12 of that site."""
    return [(telemetry_topic(SITES[i % 4], f"m{i % 12:02d}"), orjson.dumps({"ts": NOW + i * 0.01, "seq": i}))
            for i in range(first, first + n)]


def _stats(url: str) -> list[dict]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT counters FROM ingest_worker_stats ORDER BY started_at")]


def test_kill_9_of_a_worker_and_a_broker_restart_lose_nothing_store_nothing_twice(
    broker: EmbeddedBroker, fresh_database_url: str, tmp_path: Path
) -> None:
    url, log = fresh_database_url, tmp_path / "workers.log"
    workers = [_worker(url, broker, i, log) for i in range(2)]
    try:
        assert wait_until(lambda: count(url, "SELECT count(*) FROM ingest_worker_stats") == 2, 30), log.read_text()
        publisher = Publisher(broker, "routed-publisher")
        feeder = threading.Thread(target=lambda: [publisher.publish(_messages(k, 200)) or time.sleep(0.03)
                                                  for k in range(0, 6000, 200)])
        feeder.start()
        assert wait_until(lambda: count(url, "SELECT count(*) FROM telemetry") > 1000, 30)
        os.kill(workers[0].pid, signal.SIGKILL)  # mid-stream: its session keeps what it had not acknowledged
        workers[0].wait(10)
        feeder.join(120)
        publisher.close()
        assert count(url, "SELECT count(*) FROM telemetry") < 6000, "the kill should land mid-stream"
        broker.stop()  # SIGTERM: Mosquitto saves sessions, subscriptions and queued messages
        broker.start()  # same port; worker 1 reconnects by itself
        workers[0] = _worker(url, broker, 0, log)
        publisher = Publisher(broker, "routed-publisher-2")
        publisher.publish(_messages(6000, 2000))
        publisher.close()
        assert wait_until(lambda: count(url, "SELECT count(*) FROM telemetry") >= 8000, 60), log.read_text()[-2000:]
    finally:
        stop_processes(workers, 30)
    with psycopg.connect(url) as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT (site_id, seq)) FROM telemetry").fetchone()
        per_site = dict(conn.execute("SELECT site_id, count(*) FROM telemetry GROUP BY site_id").fetchall())
    assert (total, distinct) == (8000, 8000)
    assert per_site == dict.fromkeys(SITES, 2000)
    assert count(url, "SELECT count(*) FROM ingest_rejects") == 0
    stats = _stats(url)
    assert len(stats) == 3  # worker 0 before and after its kill, worker 1
    # the broker delivered each site's messages to its worker's session only: nobody read another's
    assert [s["other_partition_messages"] for s in stats] == [0, 0, 0]
    survivor = next(s for s in stats if s["received_messages"] and s["stored_rows"] >= 4000)
    assert 4000 <= survivor["received_messages"] < 8000  # its two sites, not the whole stream


def test_a_wrong_site_list_is_one_line_and_exit_code_2(fresh_database_url: str, broker: EmbeddedBroker) -> None:
    env = {**os.environ, "SITEPULSE_DATABASE_URL": fresh_database_url, "SITEPULSE_MQTT_URL": broker.url,
           "SITEPULSE_INGEST_SITES": "north,north"}
    done = subprocess.run([sys.executable, "-m", "ingest"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "SITEPULSE_INGEST_SITES" in lines[0] and "twice" in lines[0] and "Traceback" not in done.stderr
