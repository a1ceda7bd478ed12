"""Issue 35: "in the embedded default any local client reads every site's telemetry and can overwrite another site's
retained birth". The embedded Mosquitto, started as ``sitepulse serve``/``demo`` start it (``open_runtime`` with no
SITEPULSE_MQTT_URL), has a user per site and role and production's ACLs: checked here by what actually arrives at a
subscriber and in the database. (The anonymous broker of the other tests, tests/conftest.py's ``mqtt_broker``, is a
fixture, not what users run.)

Mosquitto drops a publish its ACL denies and still acknowledges it (MQTT 3.1.1 has no way to say no), so "denied"
is asserted as: a later allowed message arrived, the denied one never did.
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
from sitepulse.embedded.mqtt_accounts import BrokerAccounts
from sitepulse.errors import SitePulseError
from sitepulse.runtime import Runtime, open_runtime
from sitepulse.settings import Settings, get_settings, load_settings
from sitepulse.sitefile import parse_site
from sitepulse.sites import save_site
from tests.conftest import running_worker, wait_until
from tests.security.conftest import site_yaml

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
    settings = load_settings(database_url=database_url, data_dir=data_dir, ingest_batch_ms=50,
                             ingest_client_id="security-ingest")
    with open_runtime(settings) as runtime:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for site, machine in (("north", "N1"), ("south", "S1")):
                save_site(conn, site, parse_site(site_yaml(site.title(), machine)))
        runtime.device_url("north"), runtime.device_url("south")
        yield Embedded(runtime, settings, database_url, data_dir)


class Client:
    """A paho client logged in with a URL's user, collecting what it receives."""

    def __init__(self, url: str, client_id: str = "") -> None:
        self.received: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        parts = urlsplit(url)
        self.client.username_pw_set(unquote(parts.username), unquote(parts.password))
        self.client.on_message = lambda _c, _u, m: self.received.put((m.topic, m.payload, m.retain))
        self.client.connect(parts.hostname, parts.port)
        self.client.loop_start()

    def subscribe(self, *filters: str) -> None:
        """Subscribe (Mosquitto 2.0 grants any filter and checks each message against the ACL on delivery)."""
        acked: queue.Queue[list[int]] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: acked.put([c.value for c in codes])
        self.client.subscribe([(f, 1) for f in filters])
        acked.get(timeout=5)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

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
    assert accounts.sites() == ["north", "south"]
    assert all(p not in accounts.password_file.read_text() for p in accounts.passwords().values())  # hashes only


def test_a_device_reads_nothing_of_another_site(embedded: Embedded) -> None:
    north = Client(embedded.runtime.device_url("north"))
    south = Client(embedded.runtime.device_url("south"))
    services = Client(embedded.url("services"))
    try:
        north.subscribe("sites/south/#", "sites/+/machines/+/telemetry", "sites/north/alerts/#", "#")
        south.publish("sites/south/machines/S1/telemetry", _sample(1))
        south.publish("sites/south/machines/S1/birth", b'{"kind":"hauler","model":"A30G"}', retain=True)
        services.publish("sites/south/alerts/overload", b'{"id": 1}')
        services.publish("sites/north/alerts/overload", b'{"id": 2}')  # the control: north's own alert arrives
        got = north.messages(until_topic="sites/north/alerts/overload")
        assert [topic for topic, _, _ in got] == ["sites/north/alerts/overload"], got
    finally:
        for client in (north, south, services):
            client.close()


def test_a_device_cannot_write_another_sites_topics_nor_overwrite_its_retained_birth(embedded: Embedded) -> None:
    url = embedded.database_url
    south = Client(embedded.runtime.device_url("south"))
    north = Client(embedded.runtime.device_url("north"))
    south.publish("sites/south/machines/S9/birth", b'{"kind":"hauler","model":"A30G"}', retain=True)
    ingest_settings = embedded.settings.model_copy(update={"mqtt_url": load_settings(
        mqtt_url=embedded.url("ingest")).mqtt_url})
    watcher = Client(embedded.url("ingest"))
    try:
        watcher.subscribe("sites/+/machines/+/telemetry", "sites/south/machines/+/birth")
        watcher.messages(until_topic="sites/south/machines/S9/birth")  # the retained birth, as south published it
        with running_worker(ingest_settings):
            north.publish("sites/south/machines/S9/birth", b'{"kind":"hauler","model":"FORGED"}', retain=True)
            north.publish("sites/south/machines/S9/telemetry", _sample(1))
            north.publish("sites/south/machines/S9/status", b"offline", retain=True)
            north.publish("sites/north/machines/N1/telemetry", _sample(2))  # the control: north's own topic
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
        services.publish("sites/north/alerts/overload", b'{"id": 3}')
        services.publish("sites/east/alerts/overload", b'{"id": 4}')
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
