"""Mosquitto as a child process on loopback, with SitePulse's loss-free configuration.

``secured`` (as ``sitepulse serve`` and ``demo`` start it) turns on per-site users and ACLs like production's
(mqtt_accounts.py): no anonymous client, each site's devices confined to their site's topics. Test fixtures start it
open. A running secured broker re-reads its password and ACL files on SIGHUP (``reload_broker``) when a site's
devices get an account.

No MQTT broker ships as a Python wheel, so this needs Debian's ``mosquitto`` (or brew's).
amqtt is not an option: it never redelivers unacknowledged QoS 1 messages (docs/ARCHITECTURE.md §Why not amqtt).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import paho.mqtt.client as mqtt

from sitepulse.embedded.mqtt_accounts import BrokerAccounts, device_user
from sitepulse.embedded.ports import free_port, port_in_use, wait_for_port
from sitepulse.errors import ConfigError, SitePulseError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "Mosquitto is not installed: run 'apt-get install mosquitto' (Debian/Ubuntu) or "
    "'brew install mosquitto' (macOS), or point SITEPULSE_MQTT_URL at a running broker"
)


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or a one-line error saying how to get one."""
    found = shutil.which("mosquitto") or next(
        (
            p
            for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
            if Path(p).exists()
        ),
        None,
    )
    if not found:
        raise SitePulseError(INSTALL_HINT)
    return found


PID_FILE = "mosquitto.pid"


def render_config(host: str, port: int, data_dir: Path, secured: bool = False) -> str:
    """SitePulse's shipped broker configuration for this listener and data directory."""
    access = "allow_anonymous true"
    if secured:
        accounts = BrokerAccounts(data_dir)
        access = f"allow_anonymous false\npassword_file {accounts.password_file}\nacl_file {accounts.acl_file}"
    template = files("sitepulse.embedded").joinpath("mosquitto.conf").read_text()
    return template.format(host=host, port=port, data_dir=data_dir, access=access)


def with_user(url: str, user: str, password: str) -> str:
    """``mqtt://host:port`` with a user and password in it."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}").geturl()


def listener_address(data_dir: Path) -> tuple[str, int] | None:
    """Host and port of the embedded Mosquitto's last rendered configuration in ``data_dir``, if any."""
    try:
        text = (Path(data_dir) / "mosquitto.conf").read_text()
    except OSError:
        return None
    match = re.search(r"^listener\s+(\d+)\s+(\S+)", text, re.M)
    return (match[2], int(match[1])) if match else None


def reload_broker(data_dir: Path) -> bool:
    """Make the embedded Mosquitto of ``data_dir`` re-read its password and ACL files (SIGHUP); False when none is
    running there. The pid is only signalled while it is still that Mosquitto (a pid may be reused)."""
    data_dir = Path(data_dir).absolute()
    try:
        pid = int((data_dir / PID_FILE).read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return False
    if str(data_dir / "mosquitto.conf").encode() not in command:
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    return True


def connect_answer(url: str, timeout: float = 2.0) -> mqtt.ReasonCode | None:
    """The broker's CONNACK reason to the user and password of ``url`` (None: no answer in time)."""
    parts = urlsplit(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if parts.username is not None:
        client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
    answered, answers = threading.Event(), []
    client.on_connect = lambda _c, _u, _f, code, _p: (answers.append(code), answered.set())
    try:
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=5)
        client.loop_start()
        answered.wait(timeout)
    except OSError:
        pass
    finally:
        client.disconnect()  # before loop_stop, which else waits out the loop's 1 s select
        client.loop_stop()
    return answers[0] if answers else None


def wait_until_accepted(url: str, timeout: float = 10.0) -> bool:
    """Connect with the user and password of ``url`` until the broker accepts them (a reload takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = connect_answer(url, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        if answer is not None and not answer.is_failure:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@dataclass
class EmbeddedBroker:
    """A Mosquitto child process whose persistence lives in ``data_dir``."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    secured: bool = False
    routes: dict[str, list[str]] | None = None  # decoder routes (site -> topic filters) the ACL opens
    _process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The listener's URL, without credentials."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def accounts(self) -> BrokerAccounts:
        return BrokerAccounts(Path(self.data_dir).absolute())

    def url_as(self, user: str) -> str:
        """The URL with ``user``'s credentials (made if it has none; a running broker is reloaded for them)."""
        if not self.secured:
            return self.url
        passwords = self.accounts.passwords()
        if user not in passwords:
            passwords = self.accounts.ensure(user)
            if self.running:
                self._process.send_signal(signal.SIGHUP)
                if not wait_until_accepted(with_user(self.url, user, passwords[user])):
                    raise SitePulseError(f"embedded Mosquitto did not take the new user {user} after a reload")
        return with_user(self.url, user, passwords[user])

    def device_url(self, site_id: str) -> str:
        """The URL a site's devices publish to (their own account on a secured broker)."""
        return self.url_as(device_user(site_id)) if self.secured else self.url

    def start(self) -> str:
        """Start the broker and return its URL once it accepts connections."""
        binary = find_mosquitto()
        self.data_dir = Path(self.data_dir).absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        elif port_in_use(self.host, self.port):
            raise ConfigError(
                "SITEPULSE_EMBEDDED_MQTT_PORT", f"port {self.port} on {self.host} is already in use"
            )
        if self.secured:
            self.accounts.ensure(routes=self.routes or {})
        config = self.data_dir / "mosquitto.conf"
        config.write_text(render_config(self.host, self.port, self.data_dir, self.secured))
        if os.geteuid() == 0:  # mosquitto drops root to this user; let it own its data
            config.write_text(config.read_text() + "user root\n")
        self._process = subprocess.Popen(
            [binary, "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not wait_for_port(self.host, self.port, timeout=10):
            _, err = self._process.communicate(timeout=5) if self._process.poll() is not None else (None, b"")
            self.stop()
            raise SitePulseError(f"embedded Mosquitto did not start: {err.decode().strip()}")
        (self.data_dir / PID_FILE).write_text(str(self._process.pid))
        log.info("embedded Mosquitto listening on %s", self.url)
        return self.url

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (SIGTERM saves its persistence; ``kill`` simulates a crash)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        (self.data_dir / PID_FILE).unlink(missing_ok=True)
