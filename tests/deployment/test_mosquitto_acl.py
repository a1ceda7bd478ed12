"""The compose broker's authentication and per-site ACLs, on a real Mosquitto running the shipped config.

``deploy/mosquitto/mosquitto.conf`` runs as shipped except its listener (a free loopback port) and
its paths (a temporary directory); the password and ACL files come from ``scripts/compose_secrets.py``
for two sites. Verified with MQTT v5 reason codes and by what actually arrives.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sitepulse.embedded.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


def _secrets_module():
    spec = importlib.util.spec_from_file_location("compose_secrets", ROOT / "scripts" / "compose_secrets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compose_secrets = _secrets_module()


def _mosquitto() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        pytest.fail("the ACL test needs Mosquitto: apt-get install mosquitto", pytrace=False)
    return found


class Broker:
    def __init__(self, port: int, env: dict[str, str], workdir: Path) -> None:
        self.port = port
        self.env = env
        self.workdir = workdir

    def password(self, user: str) -> str:
        if user.startswith("device-"):
            return self.env[compose_secrets.device_variable(user.removeprefix("device-"))]
        return self.env[compose_secrets.SERVICE_USERS[user]]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    work = tmp_path_factory.mktemp("mosquitto-acl")
    env = compose_secrets.generate(["north", "south"], work / ".env", work)
    port = free_port("127.0.0.1")
    conf = CONF.read_text()
    assert "allow_anonymous false" in conf and "max_queued_messages 0" in conf and "acl_file" in conf
    conf = re.sub(r"^listener 1883 0\.0\.0\.0$", f"listener {port} 127.0.0.1", conf, flags=re.M)
    conf = conf.replace("/mosquitto/config/", f"{work}/").replace("/mosquitto/data/", f"{work}/data/")
    conf = conf.replace("log_dest stdout", f"log_dest file {work}/mosquitto.log")
    if os.geteuid() == 0:  # mosquitto drops root to its own user, which cannot read pytest's tmp dir
        conf += "user root\n"
    (work / "data").mkdir()
    (work / "mosquitto.conf").write_text(conf)
    process = subprocess.Popen([_mosquitto(), "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    if not wait_for_port("127.0.0.1", port, timeout=10):
        process.kill()
        pytest.fail(f"mosquitto did not start: {process.communicate(timeout=5)[1]}")
    yield Broker(port, env, work)
    process.terminate()
    process.wait(10)


class Client:
    """A paho MQTT v5 client that records CONNACK, SUBACK and PUBACK reason codes and messages."""

    def __init__(self, broker: Broker, user: str | None, password: str | None = None, name: str = "") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name or f"acl-{user}-{time.time_ns()}",
                                  protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password if password is not None else broker.password(user))
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.__setitem__(mid, list(codes))
        self.client.on_publish = lambda c, u, mid, code, p: self.pubacks.__setitem__(mid, code)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        self.connected.wait(5)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self.connack = reason
        self.connected.set()

    def subscribe(self, topic: str) -> list[ReasonCode]:
        _, mid = self.client.subscribe(topic, qos=1)
        return _wait_for(lambda: self.subacks.get(mid))

    def publish(self, topic: str, payload: bytes = b"{}") -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1, properties=Properties(mqtt.PacketTypes.PUBLISH))
        return _wait_for(lambda: self.pubacks.get(info.mid))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait_for(get, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = get()
        if value is not None:
            return value
        time.sleep(0.01)
    raise AssertionError("no acknowledgement from the broker")


def _granted(codes: list[ReasonCode]) -> bool:
    return all(code.value in (0, 1, 2) for code in codes)


@pytest.fixture
def clients(broker: Broker) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def test_anonymous_and_wrong_passwords_are_refused(broker: Broker, clients: list[Client]) -> None:
    anonymous = Client(broker, None)
    wrong = Client(broker, "device-north", "not-the-password")
    clients += [anonymous, wrong]
    assert anonymous.connack is not None and anonymous.connack.is_failure
    assert wrong.connack is not None and wrong.connack.is_failure
    right = Client(broker, "device-north")
    clients.append(right)
    assert right.connack is not None and not right.connack.is_failure


@pytest.mark.parametrize("telemetry", ["sites/+/machines/+/telemetry",  # partitioned workers
                                       "$share/sitepulse-ingest/sites/+/machines/+/telemetry"])
def test_a_device_of_one_site_cannot_publish_to_another_site(broker: Broker, clients: list[Client],
                                                             telemetry: str) -> None:
    ingest = Client(broker, "ingest")
    north = Client(broker, "device-north")
    clients += [ingest, north]
    assert _granted(ingest.subscribe(telemetry))
    assert _granted(ingest.subscribe("sites/+/machines/+/birth"))
    assert _granted(ingest.subscribe("sites/+/machines/+/status"))
    own = north.publish("sites/north/machines/H1/telemetry", b'{"ts": 1}')
    other = north.publish("sites/south/machines/H9/telemetry", b'{"ts": 2}')
    birth = north.publish("sites/north/machines/H1/birth", b'{"kind": "hauler"}')
    assert own.value == 0 and birth.value == 0
    assert other.value == 0x87, f"publishing to another site must be 'Not authorized', got {other}"
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and len(ingest.messages) < 2:
        time.sleep(0.02)
    time.sleep(0.3)  # anything wrongly forwarded would arrive by now
    topics = sorted(t for t, _ in ingest.messages)
    assert topics == ["sites/north/machines/H1/birth", "sites/north/machines/H1/telemetry"]


def test_devices_cannot_read_telemetry_or_other_sites_alerts_or_publish_alerts(
    broker: Broker, clients: list[Client]
) -> None:
    # Mosquitto grants wildcard SUBSCRIBEs and applies read ACLs to each message it would deliver,
    # so what matters (and is checked) is that nothing arrives.
    south, north, services = Client(broker, "device-south"), Client(broker, "device-north"), Client(broker, "services")
    clients += [south, north, services]
    south.subscribe("sites/+/machines/+/telemetry")
    south.subscribe("sites/+/alerts/#")
    assert north.publish("sites/north/machines/H1/telemetry", b'{"ts": 3}').value == 0
    assert services.publish("sites/north/alerts/weight-loading", b"{}").value == 0
    assert services.publish("sites/south/alerts/weight-loading", b"{}").value == 0
    _wait_for(lambda: south.messages or None)
    time.sleep(0.3)
    assert [t for t, _ in south.messages] == ["sites/south/alerts/weight-loading"]
    assert south.publish("sites/south/alerts/weight-loading").value == 0x87
    assert south.publish("sites/south/other").value == 0x87


def test_services_and_api_publish_alerts_but_not_telemetry(broker: Broker, clients: list[Client]) -> None:
    services, api, device = Client(broker, "services"), Client(broker, "api"), Client(broker, "device-north")
    clients += [services, api, device]
    assert _granted(device.subscribe("sites/north/alerts/#"))
    assert services.publish("sites/north/alerts/weight-loading", b'{"level": "warning"}').value == 0
    assert api.publish("sites/north/alerts/positioning", b'{"level": "info"}').value == 0
    assert services.publish("sites/north/machines/H1/telemetry").value == 0x87
    api.subscribe("sites/+/machines/+/telemetry")  # granted, but the ACL delivers nothing to it
    assert device.publish("sites/north/machines/H1/telemetry", b'{"ts": 4}').value == 0
    _wait_for(lambda: len(device.messages) >= 2 or None)
    time.sleep(0.3)
    assert api.messages == []
    assert sorted(t for t, _ in device.messages) == ["sites/north/alerts/positioning",
                                                     "sites/north/alerts/weight-loading"]


def test_password_hashes_are_the_ones_mosquitto_passwd_makes(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed (Debian's mosquitto package ships it)")
    subprocess.run([tool, "-c", "-b", str(tmp_path / "pw"), "alice", "s3cret"], check=True)
    line = (tmp_path / "pw").read_text().strip()
    _, algorithm, iterations, salt, _digest = line.split(":", 1)[1].split("$")
    import base64

    ours = compose_secrets.hash_password("s3cret", base64.b64decode(salt), int(iterations))
    assert line == f"alice:{ours}"
