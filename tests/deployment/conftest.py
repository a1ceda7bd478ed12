"""Fixtures for deployment tests: TimescaleDB compiled to WebAssembly, served on the PostgreSQL wire protocol.

No TimescaleDB server installs on this machine, so the TimescaleDB contract runs against PGlite
with TimescaleDB 2.23 (PostgreSQL 17.5) compiled to WebAssembly, served by pglite-socket
(``deploy/timescaledb-wasm``, pinned in its package-lock.json). Its limits: one client connection
at a time (others queue), COPY is not supported (it crashes the server), no background workers
(policies are run with ``CALL run_job``), LISTEN/NOTIFY deliver nothing.

Node.js or the npm packages missing: the tests skip with the command that installs them; in CI
(``CI=true``) that is a failure, because CI is where the TimescaleDB path must be proven.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
WASM_DIR = ROOT / "deploy" / "timescaledb-wasm"
INSTALL_HINT = "bash scripts/timescaledb-wasm.sh install  (needs Node.js >= 18 and npm)"
START_TIMEOUT_S = 90.0


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where the TimescaleDB contract must run."""
    message = f"TimescaleDB-WASM contract tests cannot run: {reason}. Install with: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass
class TimescaleWasm:
    """A running TimescaleDB-WASM server; ``url`` is what SITEPULSE_DATABASE_URL would be."""

    host: str
    port: int
    process: subprocess.Popen
    output: list[str]

    @property
    def url(self) -> str:
        # Any password is accepted; the server answers SSL negotiation with a plain 'R', so no SSL.
        return f"postgresql://postgres:sitepulse@{self.host}:{self.port}/postgres?sslmode=disable"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return "".join(self.output[-40:])


def _reader(stream, lines: list[str], ready: threading.Event, found: list[tuple[str, int]]) -> None:
    for line in stream:
        lines.append(line)
        if line.startswith("LISTENING ") and not found:
            _, host, port = line.split()
            found.append((host, int(port)))
            ready.set()
    ready.set()


def start_timescaledb_wasm() -> TimescaleWasm:
    node = shutil.which("node")
    if node is None:
        _unavailable("Node.js ('node') is not on PATH")
    if not (WASM_DIR / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        _unavailable(f"the npm packages are not installed in {WASM_DIR.relative_to(ROOT)}")
    process = subprocess.Popen(
        [node, "server.mjs", "--host", "127.0.0.1", "--port", "0"],
        cwd=WASM_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    found: list[tuple[str, int]] = []
    threading.Thread(target=_reader, args=(process.stdout, lines, ready, found), daemon=True).start()
    if not ready.wait(START_TIMEOUT_S) or not found:
        process.kill()
        process.wait(10)
        pytest.fail(f"TimescaleDB-WASM did not start within {START_TIMEOUT_S:.0f}s:\n{''.join(lines[-40:])}")
    host, port = found[0]
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return TimescaleWasm(host, port, process, lines)


def stop_timescaledb_wasm(server: TimescaleWasm) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)


@pytest.fixture(scope="session")
def timescaledb_wasm() -> Iterator[TimescaleWasm]:
    """One TimescaleDB-WASM server (in memory) for the session."""
    server = start_timescaledb_wasm()
    try:
        yield server
    finally:
        stop_timescaledb_wasm(server)


@pytest.fixture
def tsdb(timescaledb_wasm: TimescaleWasm) -> Iterator[psycopg.Connection]:
    """An autocommit connection, closed after the test: the server serves one connection at a time."""
    if not timescaledb_wasm.alive():
        pytest.fail(f"the TimescaleDB-WASM server died:\n{timescaledb_wasm.log()}", pytrace=False)
    with psycopg.connect(timescaledb_wasm.url, autocommit=True, connect_timeout=30) as conn:
        yield conn
    if not timescaledb_wasm.alive():
        pytest.fail(f"the TimescaleDB-WASM server died during the test:\n{timescaledb_wasm.log()}", pytrace=False)
