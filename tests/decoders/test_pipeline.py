"""Decoders through the real pipeline: a worker with a decoders file, real Mosquitto, real PostgreSQL.

One scenario, run once for the module: pysparkplug (an independent Sparkplug B implementation, in its own
venv because it pins paho-mqtt 1.x) is the edge node; it births, sends DATA with names and with aliases
only, historical values, then leaves a seq gap. Ingest must reject the gap, publish a Rebirth NCMD that
the edge node understands, store the data after the rebirth, and mark the machines offline when the edge
node dies (SIGKILL: the broker publishes its NDEATH will). Beside it, a tracker's mapped JSON and native
JSON messages go through the same worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from rich.console import Console

from ingest.metrics import render_prometheus
from ingest.topics import telemetry_topic
from ingest.worker import IngestWorker
from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.settings import load_settings
from stack.status import collect_status, render
from tests.conftest import Broker, wait_until
from tests.ingest.conftest import Publisher

PYSPARKPLUG = "pysparkplug==0.6.1"
EDGE_SCRIPT = Path(__file__).with_name("spb_edge_node.py")
GROUP, EDGE, DEVICE = "pipeline-quarry", "gw-1", "Truck-7"
T0 = int(time.time() * 1000) - 600_000


def pysparkplug_python() -> str:
    """A venv with pysparkplug (paho-mqtt 1.x), made once under the temp dir and reused."""
    venv = Path(tempfile.gettempdir()) / "sitepulse-pysparkplug-0.6.1"
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PYSPARKPLUG],
                       check=True)
        (venv / "ready").touch()
    return str(python)


def decoders_file(folder: Path) -> Path:
    path = folder / "decoders.toml"
    path.write_text(f"""
[[route]]
decoder = "sparkplug-b"
site = "north"
topics = ["spBv1.0/{GROUP}/#"]
[route.options]
machine_ids = {{ "{DEVICE}" = "HX-07" }}
rebirth_interval_s = 0
[route.options.metrics]
"GPS/Latitude" = "lat"
"GPS/Longitude" = "lon"
"Engine/Hours" = "engine_hours"
"Engine/Running" = "engine_on"

[[route]]
decoder = "mapped-json"
site = "north"
topics = ["pipeline-trackers/+/up"]
[route.options]
ts = "t"
ts_format = "epoch_s"
fields = {{ lat = "la", lon = "lo", speed_kmh = {{ path = "v", unit = "m/s" }} }}
""")
    return path


class Scenario:
    """What the module's one run left behind."""

    url: str
    worker: IngestWorker
    edge_lines: list[str]
    metrics: str


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker of its own: the session's holds other tests' retained births, which the worker would count."""
    server = EmbeddedBroker(tmp_path_factory.mktemp("decoders-mqtt"))
    server.start()
    yield Broker(server.host, server.port, server)
    server.stop()


@pytest.fixture(scope="module")
def scenario(database_url: str, own_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    mqtt_broker = own_broker
    python = pysparkplug_python()
    settings = load_settings(database_url=database_url, mqtt_url=mqtt_broker.url, ingest_batch_ms=50,
                             ingest_client_id="decoders-pipeline",
                             decoders_file=decoders_file(tmp_path_factory.mktemp("decoders")))
    stop = threading.Event()
    worker = IngestWorker(settings, stop)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert wait_until(lambda: worker.consumer.version is not None, 15), "worker did not connect"
    time.sleep(0.3)  # subscriptions granted
    publisher = Publisher(mqtt_broker.server, "decoders-pipeline-publisher")
    now = time.time() - 60
    trackers = [(f"pipeline-trackers/TR-{i % 3}/up", orjson.dumps({"t": now + i, "la": 59.0, "lo": 18.0, "v": 5}))
                for i in range(30)]
    trackers += [("pipeline-trackers/TR-0/up", b"{broken"), ("pipeline-trackers/TR-0/up", b'{"t": 1, "la": 1}')]
    native = [(telemetry_topic("north", "native-1"), orjson.dumps({"ts": now + i, "lat": 59.0})) for i in range(10)]
    edge = subprocess.Popen([python, str(EDGE_SCRIPT), mqtt_broker.host, str(mqtt_broker.port), GROUP, EDGE, DEVICE,
                             str(T0)], stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        publisher.publish(trackers + native)
        for line in edge.stdout:
            lines.append(line.strip())
            if line.strip() in ("done", "no-rebirth-request"):
                break
        url = database_url
        expected = 1 + 20 + 20 + 3 + 1 + 5 + 30 + 10
        wait_until(lambda: _count(url, "SELECT count(*) FROM telemetry WHERE site_id = 'north'") >= expected, 20)
        edge.send_signal(signal.SIGKILL)  # the broker publishes the NDEATH will
        edge.wait(10)
        wait_until(lambda: _count(url, "SELECT count(*) FROM machines WHERE machine_id = 'HX-07'"
                                       " AND status = 'offline'") == 1, 20)
    finally:
        if edge.poll() is None:
            edge.kill()
        publisher.close()
        stop.set()
        thread.join(30)
    result = Scenario()
    result.url, result.worker, result.edge_lines = database_url, worker, lines
    with psycopg.connect(database_url) as conn:
        result.metrics = render_prometheus(conn)
    return result


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_the_independent_edge_node_received_our_rebirth_request(scenario: Scenario) -> None:
    assert scenario.edge_lines == ["connected", "data-sent", "gap-sent", "rebirth-received", "reborn", "done"]


def test_sparkplug_samples_are_stored_with_mapped_fields_and_nothing_of_the_gap(scenario: Scenario) -> None:
    rows = _rows(scenario.url, "SELECT extract(epoch FROM ts)::float8 * 1000, lat, lon, engine_hours, engine_on"
                               " FROM telemetry WHERE machine_id = 'HX-07' ORDER BY ts")
    lats = [round(r[1], 4) for r in rows]
    historical = [58.0, 58.001, 58.002]
    named = [round(59.0 + i / 1000, 4) for i in range(20)]
    aliased = [round(59.1 + i / 1000, 4) for i in range(20)]
    after = [59.5] + [round(59.6 + i / 1000, 4) for i in range(5)]
    assert lats == historical + [59.0] + named + aliased + after  # the gap's 1.0 and 2.0 are not there
    assert rows[0][0] == pytest.approx(T0 - 3_600_000)
    birth = rows[3]
    assert birth[2:] == (18.0, 1000.0, True)


def test_the_gap_and_the_message_after_it_are_rejects_with_reasons(scenario: Scenario) -> None:
    rejects = _rows(scenario.url, "SELECT topic, reason FROM ingest_rejects WHERE topic LIKE 'spBv1.0/%' ORDER BY id")
    assert [r[0] for r in rejects] == [f"spBv1.0/{GROUP}/DDATA/{EDGE}/{DEVICE}"] * 2
    assert "seq 44 where 43 was due" in rejects[0][1] and "rebirth requested" in rejects[0][1]
    assert "refused until the edge node's next NBIRTH" in rejects[1][1]


def test_ndeath_marked_the_machines_offline(scenario: Scenario) -> None:
    status = dict(_rows(scenario.url, "SELECT machine_id, status FROM machines WHERE site_id = 'north'"
                                      " AND machine_id IN ('HX-07', 'gw-1')"))
    assert status == {"HX-07": "offline", "gw-1": "offline"}


def test_mapped_json_and_native_messages_went_through_the_same_worker(scenario: Scenario) -> None:
    per_machine = dict(_rows(scenario.url, "SELECT machine_id, count(*) FROM telemetry WHERE site_id = 'north'"
                                           " AND machine_id NOT IN ('HX-07') GROUP BY machine_id"))
    assert per_machine == {"TR-0": 10, "TR-1": 10, "TR-2": 10, "native-1": 10}
    speeds = _rows(scenario.url, "SELECT DISTINCT speed_kmh FROM telemetry WHERE machine_id LIKE 'TR-%'")
    assert speeds == [(18.0,)]
    reasons = sorted(r[0] for r in _rows(scenario.url, "SELECT reason FROM ingest_rejects"
                                                       " WHERE topic LIKE 'pipeline-trackers/%'"))
    assert reasons[0].startswith("mapped-json: not valid JSON") and reasons[1] == "ts 1 is before 2000-01-01"


def test_counts_per_decoder_and_reason_reach_the_metrics(scenario: Scenario) -> None:
    counters = scenario.worker.counters
    assert counters.decoder_messages["mapped-json"] == 32
    assert counters.decoder_messages["native-json"] == 10
    assert counters.decoder_messages["sparkplug-b"] >= 2 + 20 + 21 + 2 + 2 + 5
    assert counters.decoder_rejects["sparkplug-b"] == {"seq-gap": 1, "before-birth": 1}
    assert counters.decoder_rejects["mapped-json"] == {"not-json": 1, "contract": 1}
    assert 'sitepulse_ingest_decoder_rejects_total{worker="' in scenario.metrics
    assert 'decoder="sparkplug-b",reason="seq-gap"} 1' in scenario.metrics
    assert os.environ.get("SITEPULSE_DECODERS_FILE") is None  # the test set it through settings only


def test_sitepulse_status_shows_each_decoder_and_its_reject_reasons(scenario: Scenario) -> None:
    with psycopg.connect(scenario.url, autocommit=True) as conn:
        status = collect_status(conn)
    assert status.decoders["sparkplug-b"]["rejects"] == {"seq-gap": 1, "before-birth": 1}
    assert status.decoders["native-json"] == {"messages": 10, "rejects": {}}
    console = Console(record=True, width=200)
    render(console, status)
    text = console.export_text()
    assert "Decoders (all workers)" in text and "before-birth 1, seq-gap 1" in text
