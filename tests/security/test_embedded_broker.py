"""Issue 35: "in the embedded default any local client reads every site's telemetry and can overwrite another site's
retained birth". The embedded Mosquitto, started as ``sitepulse serve``/``demo`` start it (``open_runtime`` with no
SITEPULSE_MQTT_URL), has a user per site and role and production's ACLs: checked here by what actually arrives at a
subscriber and in the database. (The anonymous broker of the other tests, tests/conftest.py's ``mqtt_broker``, is a
fixture, not what users run.)

A publish the ACL denies is answered PUBACK 0x87 *Not authorized* (MQTT v5; Mosquitto 2.0.11 then drops the
connection, of a v3.1.1 client too) and reaches nobody: asserted by the reason code and by delivery (a later
allowed message arrived, the denied one never did), and for ingest by what the database holds.
"""

from __future__ import annotations

import os
import queue
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sitepulse.embedded.broker import connect_answer, with_user
from sitepulse.embedded.credentials import site_credentials
from sitepulse.embedded.mqtt_accounts import BrokerAccounts, decoder_routes
from sitepulse.errors import SitePulseError
from sitepulse.runtime import Runtime, open_runtime
from sitepulse.settings import Settings, get_settings, load_settings
from sitepulse.sitefile import parse_site
from sitepulse.sites import save_site
from tests.conftest import running_worker, wait_until
from tests.security.conftest import site_yaml

pytestmark = pytest.mark.slow  # real processes or a browser: the parallel long step (make test)

NOW = time.time() - 600


@dataclass
class Embedded:
    runtime: Runtime
    settings: Settings
    database_url: str
    data_dir: Path

    def url(self, user: str) -> str:
        return self.runtime.child_environment(user)["SITEPULSE_MQTT_URL"]


@pytest.fixture(scope="module")
def embedded(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    """Sites north and south on the embedded broker as serve starts it; their devices' accounts made as the demo
    makes its site's (``runtime.device_url``)."""
    data_dir = tmp_path_factory.mktemp("embedded")
    decoders = data_dir / "decoders.toml"  # north's Sparkplug gateway publishes its own topics
    decoders.write_text('[[route]]\ndecoder = "sparkplug-b"\nsite = "north"\ntopics = ["spBv1.0/north/#"]\n')
    settings = load_settings(database_url=database_url, data_dir=data_dir, ingest_batch_ms=50,
                             ingest_client_id="security-ingest", decoders_file=decoders)
    with open_runtime(settings) as runtime:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for site, machine in (("north", "N1"), ("south", "S1")):
                save_site(conn, site, parse_site(site_yaml(site.title(), machine)))
        runtime.device_url("north"), runtime.device_url("south")
        yield Embedded(runtime, settings, database_url, data_dir)


class Client:
    """An MQTT v5 paho client logged in with a URL's user, collecting what it receives. A denied publish is answered
    PUBACK 0x87 *Not authorized*, then Mosquitto 2.0.11 drops the connection; paho reconnects by itself."""

    def __init__(self, url: str, client_id: str = "") -> None:
        self.received: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.acks: dict[int, int] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        parts = urlsplit(url)
        self.client.username_pw_set(unquote(parts.username), unquote(parts.password))
        self.client.on_message = lambda _c, _u, m: self.received.put((m.topic, m.payload, m.retain))
        self.client.on_publish = lambda _c, _u, mid, code, _p: self.acks.__setitem__(mid, code.value)
        self.client.connect(parts.hostname, parts.port)
        self.client.loop_start()

    def subscribe(self, *filters: str) -> None:
        """Subscribe (Mosquitto 2.0 grants any filter and checks each message against the ACL on delivery)."""
        acked: queue.Queue[list[int]] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: acked.put([c.value for c in codes])
        self.client.subscribe([(f, 1) for f in filters])
        acked.get(timeout=5)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Publish with QoS 1; the PUBACK's reason code (under 0x80 accepted, 0x10 with no subscriber; 0x87 not
        authorized)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)  # queued while paho reconnects
        assert wait_until(lambda: info.mid in self.acks, 10), f"no PUBACK for {topic}"
        return self.acks[info.mid]

    def messages(self, until_topic: str, timeout: float = 5) -> list[tuple[str, bytes, bool]]:
        """Everything received up to and including the first message on ``until_topic``."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen.append(self.received.get(timeout=0.1))
            except queue.Empty:
                continue
            if seen[-1][0] == until_topic:
                return seen
        pytest.fail(f"{until_topic} never arrived; got {seen}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _sample(i: int) -> bytes:
    return orjson.dumps({"ts": NOW + i, "seq": i, "lat": 59.0, "lon": 18.0, "payload_kg": 1000.0})


def _count(url: str, sql: str, *params: object) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_anonymous_and_wrong_password_clients_are_refused(embedded: Embedded) -> None:
    bare = embedded.runtime.mqtt_url
    assert "@" not in bare
    assert str(connect_answer(bare)) == "Not authorized"
    assert connect_answer(with_user(bare, "device-north", "guessed")).is_failure
    assert connect_answer(with_user(bare, "ingest", "")).is_failure
    assert not connect_answer(embedded.runtime.device_url("north")).is_failure


def test_the_accounts_are_private_files_in_the_data_dir(embedded: Embedded) -> None:
    folder = embedded.data_dir / "mosquitto"
    accounts = BrokerAccounts(folder)
    for path in (folder / "accounts.json", accounts.password_file, accounts.acl_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert set(accounts.passwords()) == {"ingest", "services", "api", "device-north", "device-south"}
    assert "topic readwrite spBv1.0/north/#" in accounts.acl_file.read_text()
    assert accounts.sites() == ["north", "south"]
    assert all(p not in accounts.password_file.read_text() for p in accounts.passwords().values())  # hashes only


def test_a_device_reads_nothing_of_another_site(embedded: Embedded) -> None:
    north = Client(embedded.runtime.device_url("north"))
    south = Client(embedded.runtime.device_url("south"))
    services = Client(embedded.url("services"))
    try:
        north.subscribe("sites/south/#", "sites/+/machines/+/telemetry", "sites/north/alerts/#", "#")
        assert south.publish("sites/south/machines/S1/telemetry", _sample(1)) < 0x80
        assert south.publish("sites/south/machines/S1/birth", b'{"kind":"hauler","model":"A30G"}', retain=True) < 0x80
        assert services.publish("sites/south/alerts/overload", b'{"id": 1}') < 0x80
        assert services.publish("sites/north/alerts/overload", b'{"id": 2}') < 0x80  # the control: north's own alert
        got = north.messages(until_topic="sites/north/alerts/overload")
        assert [topic for topic, _, _ in got] == ["sites/north/alerts/overload"], got
    finally:
        for client in (north, south, services):
            client.close()


def test_a_device_cannot_write_another_sites_topics_nor_overwrite_its_retained_birth(embedded: Embedded) -> None:
    url = embedded.database_url
    south = Client(embedded.runtime.device_url("south"))
    north = Client(embedded.runtime.device_url("north"))
    assert south.publish("sites/south/machines/S9/birth", b'{"kind":"hauler","model":"A30G"}', retain=True) < 0x80
    ingest_settings = embedded.settings.model_copy(update={"mqtt_url": load_settings(
        mqtt_url=embedded.url("ingest")).mqtt_url, "decoders_file": None})
    watcher = Client(embedded.url("ingest"))
    try:
        watcher.subscribe("sites/+/machines/+/telemetry", "sites/south/machines/+/birth")
        watcher.messages(until_topic="sites/south/machines/S9/birth")  # the retained birth, as south published it
        with running_worker(ingest_settings):
            forged = b'{"kind":"hauler","model":"FORGED"}'
            assert north.publish("sites/south/machines/S9/birth", forged, retain=True) == 0x87
            assert north.publish("sites/south/machines/S9/telemetry", _sample(1)) == 0x87
            assert north.publish("sites/south/machines/S9/status", b"offline", retain=True) == 0x87
            assert north.publish("sites/north/machines/N1/telemetry", _sample(2)) < 0x80  # the control: its own topic
            got = watcher.messages(until_topic="sites/north/machines/N1/telemetry")
            assert [topic for topic, _, _ in got] == ["sites/north/machines/N1/telemetry"], got
            assert wait_until(lambda: _count(url, "SELECT count(*) FROM telemetry WHERE site_id = 'north'"
                                                  " AND machine_id = 'N1'") == 1, 20), "ingest stored north's sample"
            assert wait_until(lambda: _count(url, "SELECT count(*) FROM machines WHERE site_id = 'south'"
                                                  " AND machine_id = 'S9' AND model = 'A30G'") == 1, 20)
        assert _count(url, "SELECT count(*) FROM telemetry WHERE site_id = 'south'") == 0
        assert _count(url, "SELECT count(*) FROM machines WHERE model = 'FORGED' OR status = 'offline'") == 0
        late = Client(embedded.url("ingest"))  # a new subscriber gets south's retained birth, not north's
        try:
            late.subscribe("sites/south/machines/S9/birth")
            (_, payload, retained), = late.messages(until_topic="sites/south/machines/S9/birth")
            assert retained and orjson.loads(payload)["model"] == "A30G"
        finally:
            late.close()
    finally:
        for client in (south, north, watcher):
            client.close()


def test_a_decoder_route_opens_its_topics_to_its_site_only(embedded: Embedded) -> None:
    north = Client(embedded.runtime.device_url("north"))
    south = Client(embedded.runtime.device_url("south"))
    watcher = Client(embedded.url("ingest"))
    try:
        watcher.subscribe("spBv1.0/#")
        assert south.publish("spBv1.0/north/NDATA/gw1", b"forged") == 0x87
        assert north.publish("spBv1.0/south/NDATA/gw1", b"elsewhere") == 0x87
        assert north.publish("spBv1.0/north/NDATA/gw1", b"own") < 0x80
        got = watcher.messages(until_topic="spBv1.0/north/NDATA/gw1")
        assert [(topic, payload) for topic, payload, _ in got] == [("spBv1.0/north/NDATA/gw1", b"own")], got
    finally:
        for client in (north, south, watcher):
            client.close()


def test_a_decoders_file_cannot_smuggle_lines_into_the_acl(tmp_path: Path) -> None:
    decoders = tmp_path / "decoders.toml"
    decoders.write_text('[[route]]\ndecoder = "mapped-json"\nsite = "north"\n'
                        'topics = ["t/#\\nuser device-north\\ntopic readwrite #", "a b", "trackers/north/+"]\n')
    assert decoder_routes(decoders) == {"north": ["trackers/north/+"]}
    assert decoder_routes(tmp_path / "missing.toml") == {} and decoder_routes(None) == {}


def _credentials(embedded: Embedded, site: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SITEPULSE_DATABASE_URL": embedded.database_url, "SITEPULSE_DATA_DIR": str(embedded.data_dir)}
    return subprocess.run([sys.executable, "-m", "sitepulse", "site", "credentials", site], env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_new_sites_credentials_work_on_the_running_broker_at_once(embedded: Embedded) -> None:
    with psycopg.connect(embedded.database_url, autocommit=True) as conn:
        save_site(conn, "east", parse_site(site_yaml("East", "E1")))
    result = _credentials(embedded, "east")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["user"] == "device-east" and lines["password"] == BrokerAccounts(
        embedded.data_dir / "mosquitto").passwords()["device-east"]
    assert "the running broker takes them now" in result.stderr
    assert not connect_answer(lines["url"]).is_failure  # no restart: the broker re-read its files
    east, services = Client(lines["url"]), Client(embedded.url("services"))
    try:
        east.subscribe("sites/north/alerts/#", "sites/east/alerts/#")
        assert services.publish("sites/north/alerts/overload", b'{"id": 3}') < 0x80
        assert services.publish("sites/east/alerts/overload", b'{"id": 4}') < 0x80
        assert east.publish("sites/north/machines/N1/telemetry", _sample(3)) == 0x87
        got = east.messages(until_topic="sites/east/alerts/overload")
        assert [topic for topic, _, _ in got] == ["sites/east/alerts/overload"], got
    finally:
        east.close()
        services.close()
    assert BrokerAccounts(embedded.data_dir / "mosquitto").ensure_site("east") == lines["password"]  # kept


@pytest.mark.parametrize(("site", "mqtt_url", "words"), [
    ("nowhere", None, "site 'nowhere' not found: load its site file first"),
    ("..", None, "site id '..' is not allowed"),
    ("north", "mqtt://broker.example:1883", "SITEPULSE_MQTT_URL: names a broker of its own"),
])
def test_credentials_errors_are_one_line(embedded: Embedded, monkeypatch: pytest.MonkeyPatch, site: str,
                                         mqtt_url: str | None, words: str) -> None:
    """In process (the subprocess above shows the command's wiring): the kernel CLI prints these as one line."""
    monkeypatch.setenv("SITEPULSE_DATABASE_URL", embedded.database_url)
    monkeypatch.setenv("SITEPULSE_DATA_DIR", str(embedded.data_dir))
    if mqtt_url:
        monkeypatch.setenv("SITEPULSE_MQTT_URL", mqtt_url)
    get_settings.cache_clear()
    try:
        with pytest.raises(SitePulseError) as caught:
            site_credentials(site)
    finally:
        get_settings.cache_clear()
    assert words in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
    assert "device-nowhere" not in BrokerAccounts(embedded.data_dir / "mosquitto").passwords()
