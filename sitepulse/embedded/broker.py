"""Mosquitto as a child process on loopback, with SitePulse's loss-free configuration.

No MQTT broker ships as a Python wheel, so this needs Debian's ``mosquitto`` (or brew's).
amqtt is not an option: it never redelivers unacknowledged QoS 1 messages (docs/ARCHITECTURE.md §Why not amqtt).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

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


def render_config(host: str, port: int, data_dir: Path) -> str:
    """SitePulse's shipped broker configuration for this listener and data directory."""
    template = files("sitepulse.embedded").joinpath("mosquitto.conf").read_text()
    return template.format(host=host, port=port, data_dir=data_dir)


@dataclass
class EmbeddedBroker:
    """A Mosquitto child process whose persistence lives in ``data_dir``."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    _process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

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
        config = self.data_dir / "mosquitto.conf"
        config.write_text(render_config(self.host, self.port, self.data_dir))
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
