"""Run SitePulse's roles as child processes of one parent, restart them if they die, stop them together.

``serve`` and ``demo`` use this so ingest, the service runner, the API and the simulator
each run in their own process (own GIL, own crash domain) while one Ctrl-C stops all.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


@dataclass
class Child:
    """One role: the ``sitepulse`` sub-command it runs and its current process."""

    name: str
    args: list[str]
    restart: bool = True
    process: subprocess.Popen | None = None
    failures: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


class Supervisor:
    """Starts children with a shared environment and keeps them running until stopped."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.children: list[Child] = []
        self.stopping = threading.Event()

    def add(self, name: str, *args: str, restart: bool = True) -> None:
        self.children.append(Child(name, list(args), restart))

    def launch(self, name: str, *args: str, restart: bool = True) -> None:
        """Start one more child while ``run`` is watching (started before it is watched: never twice)."""
        child = Child(name, list(args), restart)
        self._start(child)
        self.children.append(child)

    def _start(self, child: Child) -> None:
        command = [sys.executable, "-m", "sitepulse", *child.args]
        child.process = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL)
        child.started_at = time.monotonic()
        log.info("started %s (pid %s)", child.name, child.process.pid)

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM stop every child, then return from ``run``."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())

    def run(self) -> None:
        """Start every child and watch them until asked to stop."""
        for child in self.children:
            self._start(child)
        try:
            while not self.stopping.wait(0.5):
                self._watch()
        finally:
            self.stop()

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.process
            if proc is not None and proc.poll() is not None:
                code = proc.returncode
                child.process = None
                if not child.restart:
                    log.info("%s finished (exit %s)", child.name, code)
                    continue
                child.failures = 0 if now - child.started_at > 60 else child.failures + 1
                delay = min(MAX_BACKOFF_S, 0.5 * 2**child.failures)
                child.next_start = now + delay
                log.warning("%s exited with %s; restarting in %.1f s", child.name, code, delay)
            if child.process is None and child.restart and now >= child.next_start:
                self._start(child)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM every child, then SIGKILL those still running after ``timeout``."""
        running = [c for c in self.children if c.process and c.process.poll() is None]
        for child in running:
            child.process.terminate()
        deadline = time.monotonic() + timeout
        for child in running:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", child.name, timeout)
                child.process.kill()
                child.process.wait()
