"""Outputs: MQTT delivery to a real broker, files, replay, the CLI functions, load mode."""

from __future__ import annotations

import threading
import time

import orjson
import paho.mqtt.client as mqtt
import pytest
import typer
from typer.testing import CliRunner

from simulators.cli import load, replay, simulate
from simulators.engine import Simulation
from simulators.faults import FaultConfig
from simulators.load import run_load
from simulators.outputs import MAX_OUTSTANDING, publish_backlog, publish_live
from simulators.replay import replay_file
from simulators.site import load_site
from sitepulse.errors import SitePulseError
from sitepulse.recording import read_messages, write_messages


class Collector:
    """A paho subscriber that records (topic, payload) for a topic filter."""

    def __init__(self, broker, topic: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _sim(site_id: str, duration: float = 120, **kw) -> Simulation:
    return Simulation(load_site(), site_id=site_id, duration_s=duration, seed=4, **kw)


def test_publish_delivers_every_message(mqtt_broker, topic_root):
    site_id = topic_root.replace("/", "-")[-60:]
    expected = list(_sim(site_id, faults=FaultConfig(duplicate=0.05, malformed=0.02, dropout=0.05)))
    sub = Collector(mqtt_broker, f"sites/{site_id}/#")
    try:
        stats = publish_live(iter(expected), mqtt_broker.url, speedup=0)
        sub.wait_for(len(expected))
    finally:
        sub.close()
    assert stats.messages == len(expected)
    # retained birth/status may arrive once more on resubscribe; telemetry arrives exactly, in order
    got_tel = [(t, p) for t, p in sub.got if t.endswith("/telemetry")]
    exp_tel = [(m.topic, m.payload) for m in expected if m.kind == "telemetry"]
    assert got_tel == exp_tel


def test_a_backlog_is_published_whole_and_in_order_past_the_outstanding_limit(mqtt_broker, topic_root):
    pairs = [(f"{topic_root}/m{i % 7}", str(i).encode()) for i in range(MAX_OUTSTANDING + 2_000)]
    sub = Collector(mqtt_broker, f"{topic_root}/#")
    try:
        stats = publish_backlog(iter(pairs), mqtt_broker.url, "backlog-test")
        sub.wait_for(len(pairs))
    finally:
        sub.close()
    assert stats.messages == len(pairs) and sub.got == pairs


def test_publish_paces_with_speedup_and_stops(mqtt_broker):
    stop = threading.Event()
    msgs = iter(_sim("pace", duration=60))
    t0 = time.monotonic()
    timer = threading.Timer(0.6, stop.set)
    timer.start()
    stats = publish_live(msgs, mqtt_broker.url, speedup=60, stop_event=stop)
    elapsed = time.monotonic() - t0
    assert stats.stopped
    assert 0.5 <= elapsed < 3  # 60 simulated s at 60x would take 1 s; we stopped at 0.6 s


def test_file_round_trip_and_replay(tmp_path, mqtt_broker):
    sim = _sim("replay", duration=90, faults=FaultConfig(malformed=0.05, wrong_type=0.05, dropout=0.1))
    msgs = list(sim)
    for name in ("r.jsonl", "r.parquet"):
        path = tmp_path / name
        assert write_messages(iter(msgs), path) == len(msgs)
        back = list(read_messages(path))
        assert [(m.topic, m.payload, m.retain) for m in back] == [(m.topic, m.payload, m.retain) for m in msgs]
    sub = Collector(mqtt_broker, "sites/replay/+/+/telemetry")
    try:
        stats = replay_file(tmp_path / "r.jsonl", mqtt_broker.url, speedup=0)
        n_tel = sum(1 for m in msgs if m.kind == "telemetry")
        sub.wait_for(n_tel)
    finally:
        sub.close()
    assert stats.messages == len(msgs)
    assert [p for _, p in sub.got] == [m.payload for m in msgs if m.kind == "telemetry"]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(simulate)
    app.command()(replay)
    app.command()(load)
    return app


def test_cli_simulate_to_file_with_truth(tmp_path):
    out, truth = tmp_path / "o.jsonl", tmp_path / "t.jsonl"
    res = CliRunner().invoke(_app(), ["simulate", "--duration", "300", "--machines", "4", "--out", str(out),
                                      "--truth", str(truth), "--seed", "9", "--faults", "duplicate=0.01"])
    assert res.exit_code == 0, res.output
    recs = [orjson.loads(line) for line in truth.read_bytes().splitlines()]
    assert recs[0]["type"] == "site" and recs[0]["settings"]["haulers"] == 4
    assert sum(1 for r in recs if r["type"] == "machine" and r["kind"] == "hauler") == 4
    first = orjson.loads(out.read_bytes().splitlines()[0])
    assert first["topic"].startswith("sites/demo/machines/")


def test_cli_user_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["simulate", "--site", str(tmp_path / "none.yaml"), "--out", "x.jsonl"])
    assert isinstance(res.exception, SitePulseError)
    res = runner.invoke(_app(), ["simulate", "--faults", "dropout=7", "--out", "x.jsonl"])
    assert isinstance(res.exception, SitePulseError)
    res = runner.invoke(_app(), ["simulate", "--duration", "5", "--mqtt-url", "mqtt://127.0.0.1:1"])
    assert isinstance(res.exception, SitePulseError) and "cannot reach" in str(res.exception)


def test_scaled_fleet_and_custom_site(tmp_path):
    sim = Simulation(load_site(), haulers=20, duration_s=600, seed=1)
    for _ in sim:
        pass
    truth = sim.truth_records()
    haulers = [r for r in truth if r["type"] == "machine" and r["kind"] == "hauler"]
    assert len(haulers) == 20 and len({h["machine_id"] for h in haulers}) == 20
    with pytest.raises(SitePulseError):
        Simulation(load_site().model_copy(update={"paths": []}), duration_s=10)


def test_load_mode_reports_rate(mqtt_broker):
    r = run_load(machines=300, hz=2, duration_s=2, processes=2, mqtt_url=mqtt_broker.url, site_id="loadtest")
    assert r.sent == 300 * 2 * 2
    assert r.acked == r.sent
    assert r.rate > 0.5 * r.target_rate
