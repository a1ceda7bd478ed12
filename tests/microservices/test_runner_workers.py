"""``sitepulse run-services --workers N``: N runner processes under the supervisor, stopped together."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

pytestmark = pytest.mark.slow  # real processes or a browser: the parallel long step (make test)


def _runner_names(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT DISTINCT application_name FROM pg_stat_activity"
                                       " WHERE application_name LIKE 'sitepulse-runner %'")}


def test_workers_start_n_runner_processes_and_stop_with_one_signal(fresh_database_url: str, mqtt_broker) -> None:
    env = {**os.environ, "SITEPULSE_DATABASE_URL": fresh_database_url, "SITEPULSE_MQTT_URL": mqtt_broker.url,
           "SITEPULSE_LOG_LEVEL": "WARNING"}
    parent = subprocess.Popen([sys.executable, "-m", "sitepulse", "run-services", "--workers", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with psycopg.connect(fresh_database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while len(names := _runner_names(conn)) < 2 and time.monotonic() < deadline:
                assert parent.poll() is None, parent.stderr.read()
                time.sleep(0.2)
            assert len(names) == 2, names
            pids = {int(n.split(":")[1]) for n in names}
            assert parent.pid not in pids  # two children, each its own process and GIL
            parent.send_signal(signal.SIGTERM)
            assert parent.wait(30) == 0
            deadline = time.monotonic() + 10
            while _runner_names(conn) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not _runner_names(conn)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def _signal_thread(pid: int, thread_id: int, sig: int) -> None:
    """tgkill(2): a signal delivered to one thread of a process, as the kernel may pick any thread for a
    process-directed one (Linux x86-64 and arm64 syscall numbers)."""
    number = {"x86_64": 234, "aarch64": 131}[os.uname().machine]
    assert ctypes.CDLL(None, use_errno=True).syscall(number, pid, thread_id, sig) == 0


def test_a_runner_stops_when_its_signal_lands_on_another_thread(fresh_database_url: str, mqtt_broker) -> None:
    """The demo's Ctrl-C sometimes left a runner waiting for the supervisor's SIGKILL: the SIGTERM had been
    delivered to one of its worker threads, and its main thread sat in an untimed wait nothing woke."""
    env = {**os.environ, "SITEPULSE_DATABASE_URL": fresh_database_url, "SITEPULSE_MQTT_URL": mqtt_broker.url,
           "SITEPULSE_LOG_LEVEL": "WARNING"}
    runner = subprocess.Popen([sys.executable, "-m", "sitepulse", "run-services"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with psycopg.connect(fresh_database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while not _runner_names(conn) and time.monotonic() < deadline:
                assert runner.poll() is None, runner.stderr.read()
                time.sleep(0.2)
        threads = sorted(int(t) for t in os.listdir(f"/proc/{runner.pid}/task") if int(t) != runner.pid)
        assert threads, "the runner has worker threads"
        _signal_thread(runner.pid, threads[-1], signal.SIGTERM)
        assert runner.wait(15) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)
