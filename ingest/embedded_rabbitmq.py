"""RabbitMQ (Debian's rabbitmq-server) as a child process with its own data directory: tests and benchmarks.

Enables the MQTT plugin (devices publish unchanged) and the consistent-hash exchange that
``ingest.amqp`` splits the stream with. The node name and data directory are fixed per instance,
so a restart finds its quorum queues again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from sitepulse.errors import SitePulseError

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return Path(SERVER).exists() or shutil.which("rabbitmq-server") is not None


class EmbeddedRabbitMQ:
    """One RabbitMQ node on free local ports; ``restart`` keeps its data."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.amqp_port = _free_port()
        self.mqtt_port = _free_port()
        self.dist_port = _free_port()
        self.node = f"sp{self.amqp_port}@localhost"
        self.process: subprocess.Popen | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    def _env(self) -> dict[str, str]:
        base = str(self.base)
        return {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_BASE": base, "HOME": base,
                "RABBITMQ_MNESIA_BASE": f"{base}/mnesia", "RABBITMQ_LOG_BASE": f"{base}/log",
                "RABBITMQ_CONFIG_FILE": f"{base}/rabbitmq.conf", "RABBITMQ_PID_FILE": f"{base}/pid",
                "RABBITMQ_ENABLED_PLUGINS_FILE": f"{base}/enabled_plugins", "ERL_EPMD_ADDRESS": "127.0.0.1"}

    def start(self, timeout: float = 90.0) -> None:
        if not available():
            raise SitePulseError("rabbitmq-server is not installed: run 'bash scripts/ensure-system-packages.sh"
                                 " rabbitmq-server' (Debian: apt-get install rabbitmq-server)")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[rabbitmq_mqtt,rabbitmq_consistent_hash_exchange].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            f"distribution.listener.port_range.min = {self.dist_port}\n"
            f"distribution.listener.port_range.max = {self.dist_port}\n"
            "loopback_users = none\n"
        )
        log = open(self.base / "server.log", "ab")  # noqa: SIM115 (kept open for the child)
        self.process = subprocess.Popen([SERVER], env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SitePulseError(f"RabbitMQ exited at start (code {self.process.returncode}); see {log.name}")
            if self._ports_open():
                return
            time.sleep(0.25)
        raise SitePulseError(f"RabbitMQ did not open its ports within {timeout:.0f}s; see {log.name}")

    def _ports_open(self) -> bool:
        for port in (self.amqp_port, self.mqtt_port):
            try:
                with socket.create_connection(("127.0.0.1", port), 0.5):
                    pass
            except OSError:
                return False
        return True

    def stop(self, kill: bool = False) -> None:
        """Stop the node (SIGTERM: clean shutdown; ``kill``: SIGKILL of its process group)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
