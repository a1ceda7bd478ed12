"""Run SitePulse's processes as children of one parent, restart them if they die, stop them together.

The one process supervisor: ``serve`` and ``demo`` run ingest, the service runner, the API and the
simulator as ``sitepulse`` sub-commands (own GIL, own crash domain), ``run-services --processes``
one process per service, and ``ingest --workers N`` its N workers as spawned Python functions.
A child that dies is restarted with backoff; one Ctrl-C (or SIGTERM) stops them all: SIGTERM to
every child, then SIGKILL for those still running after the grace period.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
STOP_GRACE_S = 15.0


class Process(Protocol):
    """What the supervisor needs of a running child (``subprocess.Popen`` has exactly this)."""

    pid: int | None
    returncode: int | None

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class SpawnedFunction:
    """A Python function run in a fresh interpreter (multiprocessing "spawn"), seen as a ``Process``."""

    def __init__(self, target: Callable[..., Any], args: tuple[Any, ...], name: str) -> None:
        self._process = multiprocessing.get_context("spawn").Process(target=target, args=args, name=name)
        self._process.start()
        self.pid = self._process.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not self._process.is_alive():
            self._process.join()
            self.returncode = self._process.exitcode
        return self.returncode

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self._process.name, timeout or 0)
        return self.returncode  # type: ignore[return-value]


@dataclass
class Child:
    """One supervised role: how to start it, and its current process."""

    name: str
    start: Callable[[], Process]
    restart: bool = True
    process: Process | None = None
    failures: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


class Supervisor:
    """Starts children and keeps them running until ``stopping`` is set."""

    def __init__(self, env: dict[str, str] | None = None, *, stopping: threading.Event | None = None,
                 grace_s: float = STOP_GRACE_S) -> None:
        self.env = {**os.environ, **(env or {})}
        self.children: list[Child] = []
        self.stopping = stopping or threading.Event()
        self.grace_s = grace_s

    def command(self, *args: str, env: dict[str, str] | None = None) -> Callable[[], Process]:
        """A starter for ``python -m sitepulse ARGS`` with the supervisor's environment (plus ``env``)."""
        full_env = {**self.env, **(env or {})}
        return lambda: subprocess.Popen([sys.executable, "-m", "sitepulse", *args], env=full_env,
                                        stdin=subprocess.DEVNULL)

    def add(self, name: str, *args: str, restart: bool = True, env: dict[str, str] | None = None) -> None:
        """Supervise the ``sitepulse`` sub-command ``args`` (started by ``run``), with ``env`` added to its own."""
        self.children.append(Child(name, self.command(*args, env=env), restart))

    def add_function(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        """Supervise ``target(*args)`` in a spawned interpreter (its arguments must pickle)."""
        self.children.append(Child(name, lambda: SpawnedFunction(target, args, name)))

    def launch(self, name: str, *args: str, restart: bool = True, env: dict[str, str] | None = None) -> None:
        """Start one more child while ``run`` is watching (started before it is watched: never twice)."""
        child = Child(name, self.command(*args, env=env), restart)
        self._start(child)
        self.children.append(child)

    def _start(self, child: Child) -> None:
        child.process = child.start()
        child.started_at = time.monotonic()
        log.info("started %s (pid %s)", child.name, child.process.pid)

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM stop every child, then return from ``run``."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())

    def run(self) -> None:
        """Start every child and watch them until asked to stop."""
        for child in self.children:
            if child.process is None:
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

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM every child, then SIGKILL those still running after ``timeout`` (default: the grace)."""
        timeout = self.grace_s if timeout is None else timeout
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
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
