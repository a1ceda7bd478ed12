"""Runner processes sharing (service, site) pairs: a failing site backs off alone, a killed runner's pairs move."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from conftest import enable, make_samples
from psycopg.types.json import Jsonb
from test_runner import _expected, _table

from evaluation.pipeline import split
from evaluation.stored import insert_telemetry
from ingest.writer import NOTIFY_CHANNEL, notify_payload
from microservices.pairs import pair_health, retry_now
from tests.conftest import wait_until

pytestmark = pytest.mark.slow  # real processes or a browser: the parallel long step (make test)

SCRIPT = Path(__file__).parent / "sample_runner.py"


@contextmanager
def runners(url: str, classes: list[str], env: dict[str, str] | None = None) -> Iterator[list[subprocess.Popen]]:
    """Real runner processes, one per entry of ``classes``, killed at the end."""
    started = [
        subprocess.Popen([sys.executable, str(SCRIPT), url, spec], env={**os.environ, **(env or {})},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for spec in classes
    ]
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def _store(conn: psycopg.Connection, rows: pd.DataFrame) -> None:
    """Store telemetry and notify the runners, as ingest's writer does."""
    insert_telemetry(conn, rows)
    conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, notify_payload(set(rows["site_id"]))))


def _runners_up(conn: psycopg.Connection) -> int:
    """Runner processes connected to the database (their connections are named after them)."""
    return conn.execute("SELECT count(DISTINCT application_name) FROM pg_stat_activity"
                        " WHERE application_name LIKE 'sitepulse-runner %'").fetchone()[0]



def test_a_failing_site_backs_off_alone_while_the_other_keeps_its_pace(runner_db: str) -> None:
    """Two runner processes, two sites; every step of 'bad' raises (its settings say so)."""
    good, bad = make_samples("good", machines=3, per_machine=60), make_samples("bad", machines=3, per_machine=60)
    with psycopg.connect(runner_db, autocommit=True) as conn:
        enable(conn, "good", "running-count")
        enable(conn, "bad", "running-count")
        conn.execute("UPDATE service_enablement SET settings = %s WHERE site_id = 'bad'", (Jsonb({"fail": True}),))
        with runners(runner_db, ["FailableCount", "FailableCount"]):
            assert wait_until(lambda: _runners_up(conn) == 2, 30)
            done = 0
            for good_part, bad_part in zip(split(good, 4), split(bad, 4), strict=True):
                _store(conn, pd.concat([good_part, bad_part]))
                done += len(good_part)
                arrived = time.monotonic()
                assert wait_until(lambda done=done: len(_table(conn, "good")) >= done, 5), \
                    "the healthy site fell behind"
                assert time.monotonic() - arrived < 5
            assert _table(conn, "good") == _expected(good)
            assert wait_until(lambda: pair_health(conn)[("running-count", "bad")]["failures"] >= 3, 10)
            health = pair_health(conn)
            failing, healthy = health[("running-count", "bad")], health[("running-count", "good")]
            assert failing["status"] == "failing" and "site bad fails on purpose" in failing["last_error"]
            assert healthy["status"] == "ok" and healthy["failures"] == 0 and healthy["retry_at"] is None
            assert _table(conn, "bad") == []
            status, error = conn.execute(
                "SELECT status, last_error FROM service_health WHERE service = 'running-count'").fetchone()
            assert status == "failing" and error.startswith("site bad: RuntimeError")

            # the admin fixes the site's settings and retries now: done before its back-off would have ended
            conn.execute("UPDATE service_enablement SET settings = '{}' WHERE site_id = 'bad'")
            backing_off_until = retry_now(conn, "running-count", "bad") and failing["retry_at"]
            assert wait_until(lambda: len(_table(conn, "bad")) == len(bad), 10)
            finished_at = conn.execute("SELECT now()").fetchone()[0]
            assert finished_at < backing_off_until
            assert _table(conn, "bad") == _expected(bad)
            assert wait_until(lambda: pair_health(conn)[("running-count", "bad")]["status"] == "ok", 5)


def test_runners_split_the_pairs_and_take_over_a_killed_runners_pairs_within_15_s(runner_db: str) -> None:
    sites = [f"s{index}" for index in range(4)]
    samples = {site: make_samples(site, machines=4, per_machine=100) for site in sites}
    with psycopg.connect(runner_db, autocommit=True) as conn:
        for site in sites:
            enable(conn, site, "running-count")
            insert_telemetry(conn, samples[site])
        env = {"SLOW_SERVICE_DELAY_S": "0.1"}
        with runners(runner_db, ["FailableCount", "FailableCount"], env) as (first, second):
            holders: set[str] = set()

            def both_hold_pairs() -> bool:
                holders.update(r for (r,) in conn.execute("SELECT runner FROM service_pairs WHERE lease_until > now()"))
                return len({h.split(":")[1] for h in holders}) == 2

            assert wait_until(both_hold_pairs, 10), f"one runner did all the work: {holders}"
            held = {s for (s,) in conn.execute(
                "SELECT site_id FROM service_pairs WHERE lease_until > now() AND split_part(runner, ':', 2) = %s",
                (str(first.pid),))}
            assert held
            first.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            assert wait_until(lambda: not conn.execute(
                "SELECT 1 FROM service_pairs WHERE split_part(runner, ':', 2) = %s AND lease_until > now()",
                (str(first.pid),)).fetchone(), 15)
            moved = {s for (s,) in conn.execute(
                "SELECT site_id FROM service_pairs WHERE split_part(runner, ':', 2) = %s", (str(second.pid),))}
            assert wait_until(lambda: all(len(_table(conn, s)) == len(samples[s]) for s in held), 15)
            assert time.monotonic() - killed < 15 + 5, "the killed runner's sites were not taken over"
            assert wait_until(lambda: all(len(_table(conn, s)) == len(samples[s]) for s in sites), 20)
            time.sleep(0.3)  # anything counted twice would show up now
        for site in sites:
            assert _table(conn, site) == _expected(samples[site]), site
        assert moved or held  # the survivor took what the killed runner held (or finished it already)


def test_a_dependant_in_another_runner_never_runs_ahead(runner_db: str) -> None:
    samples = make_samples("pit", machines=3, per_machine=80).sample(frac=1, random_state=3)
    with psycopg.connect(runner_db, autocommit=True) as conn:
        enable(conn, "pit", "running-count", "machine-tally")
        with runners(runner_db, ["SlowRunningCount", "MachineTally"], {"SLOW_SERVICE_DELAY_S": "0.05"}):
            for chunk in split(samples, 5):
                _store(conn, chunk)
                time.sleep(0.2)
            total = "SELECT coalesce(sum(samples), 0), coalesce(sum(missing_upstream), 0) FROM machine_tally.tally"
            assert wait_until(lambda: conn.execute(total).fetchone()[0] == len(samples), 20)
            assert conn.execute(total).fetchone() == (len(samples), 0)
