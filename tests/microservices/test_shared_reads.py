"""SharedReads: services of one runner process asking for the same rows of a site read them once."""

from __future__ import annotations

import threading

import pandas as pd
import psycopg
import pytest
from conftest import enable, make_samples
from sample_services import MachineTally, RunningCount

from evaluation.stored import insert_telemetry
from ingest.reader import current_watermark, read_new_telemetry
from microservices.runner import Runner
from microservices.shared_reads import SharedReads
from tests.conftest import wait_until


def _later(site_id: str, machines: int, per_machine: int, hours: int) -> pd.DataFrame:
    samples = make_samples(site_id, machines=machines, per_machine=per_machine)
    samples["ts"] += pd.Timedelta(hours=hours)
    return samples


def test_services_asking_for_the_same_rows_share_one_read_and_each_gets_its_own_frame(
        fresh_database_url: str) -> None:
    reads = SharedReads()
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        insert_telemetry(conn, make_samples("s1", machines=3, per_machine=40))
        insert_telemetry(conn, make_samples("s2", machines=2, per_machine=10))
        first, mark = reads.read(conn, after=None, site_id="s1", limit=1000)
        first["lat"] = 0.0  # a service changing its batch
        second, again = reads.read(conn, after=None, site_id="s1", limit=1000)
        direct, direct_mark = read_new_telemetry(conn, after=None, site_id="s1", limit=1000)
        other, _ = reads.read(conn, after=None, site_id="s2", limit=1000)
        assert (reads.reads, reads.shared) == (2, 1)
        assert again == mark == direct_mark and second.equals(direct) and len(second) == 120 and len(other) == 20
        insert_telemetry(conn, _later("s1", machines=1, per_machine=5, hours=1))
        newer, _ = reads.read(conn, after=mark, site_id="s1", limit=1000)  # on from the mark: a read of its own
        assert len(newer) == 5 and reads.reads == 3


def test_a_read_is_made_once_for_threads_asking_at_once_and_not_kept_past_its_time(fresh_database_url: str) -> None:
    reads = SharedReads(ttl_s=0.0)
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        insert_telemetry(conn, make_samples("s1", machines=4, per_machine=500))
        after = current_watermark(conn)
        insert_telemetry(conn, _later("s1", machines=4, per_machine=10, hours=2))
    frames: list = []
    gate = threading.Barrier(4)

    def service() -> None:
        with psycopg.connect(fresh_database_url, autocommit=True) as conn:
            gate.wait()
            frames.append(reads.read(conn, after=after, site_id="s1", limit=None))

    threads = [threading.Thread(target=service) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(frames) == 4 and all(len(f) == 40 and m == frames[0][1] for f, m in frames)
    assert reads.reads + reads.shared == 4 and reads.reads < 4  # at least one waited for another's read
    reads.expire()
    assert not reads._entries  # past its time (0 s here): nothing held


def test_a_failed_read_is_not_shared(fresh_database_url: str) -> None:
    reads = SharedReads()
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        insert_telemetry(conn, make_samples("s1", machines=1, per_machine=5))
        with pytest.raises(psycopg.errors.UndefinedColumn), conn.transaction():
            conn.execute("ALTER TABLE telemetry RENAME COLUMN lat TO latitude")
            reads.read(conn, after=None, site_id="s1", limit=None)
        frame, _ = reads.read(conn, after=None, site_id="s1", limit=None)
        assert len(frame) == 5 and reads.reads == 1


def test_a_runner_reads_a_sites_backlog_once_for_a_service_and_its_dependant(runner_db: str) -> None:
    """running-count and machine-tally (which depends on it) on one site's backlog, in one runner process: the
    dependant is taken as soon as its dependency moved, while the rows are still shared."""
    samples = make_samples("s1", machines=3, per_machine=300)
    with psycopg.connect(runner_db, autocommit=True) as conn:
        insert_telemetry(conn, samples)
        enable(conn, "s1", "running-count", "machine-tally")
        runner = Runner(runner_db, {"running-count": RunningCount(), "machine-tally": MachineTally()}, threads=1)
        runner.start()
        try:
            assert wait_until(lambda: conn.execute(
                "SELECT coalesce(sum(samples), 0) FROM machine_tally.tally WHERE site_id = 's1'").fetchone()[0]
                == len(samples), 30)
        finally:
            runner.stop()
        missing = conn.execute("SELECT sum(missing_upstream) FROM machine_tally.tally").fetchone()[0]
    assert missing == 0  # and the dependant never ran ahead of its dependency
    assert runner.reads.shared >= 1 and runner.reads.rows_read == len(samples)
