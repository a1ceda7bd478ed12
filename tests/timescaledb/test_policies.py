"""TimescaleDB's policies run by its own background scheduler, on the tables ingest writes.

Compression and retention act on real chunks (compressed, dropped), queries over compressed chunks
give the same answers as before, and the continuous aggregate ``telemetry_1m`` is refreshed by its
policy, aggregates in real time what is not materialised yet (also while ingest writes), and picks up
late samples in a bucket it had already materialised at its next refresh.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.reader import read_telemetry_range
from ingest.writer import TelemetryWriter

from .conftest import decoded_messages, job_id, run_by_scheduler

ROLLUP_SQL = ("SELECT machine_id, bucket, samples, max_payload_kg FROM telemetry_1m WHERE site_id = %s"
              " ORDER BY machine_id, bucket")
RAW_SQL = ("SELECT machine_id, time_bucket(INTERVAL '1 minute', ts) AS bucket, count(*), max(payload_kg)"
           " FROM telemetry WHERE site_id = %s GROUP BY 1, 2 ORDER BY 1, 2")
SUMMARY_SQL = ("SELECT count(*), sum(payload_kg), min(ts), max(ts), count(DISTINCT machine_id) FROM telemetry"
               " WHERE site_id = %s")


@pytest.fixture
def conn(timescaledb_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(timescaledb_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def writer(timescaledb_url: str) -> Iterator[TelemetryWriter]:
    w = TelemetryWriter(timescaledb_url)
    w.open()
    yield w
    w.close()


def _midnight(days_ago: int) -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days_ago)


def _materialised(conn: psycopg.Connection, site: str) -> list[tuple]:
    """Rows of the aggregate's materialisation hypertable only (what a refresh wrote)."""
    schema, table = conn.execute(
        "SELECT materialization_hypertable_schema, materialization_hypertable_name"
        " FROM timescaledb_information.continuous_aggregates WHERE view_name = 'telemetry_1m'").fetchone()
    query = psycopg.sql.SQL("SELECT machine_id, bucket, samples, max_payload_kg FROM {}.{} WHERE site_id = %s"
                            " ORDER BY machine_id, bucket")
    return conn.execute(query.format(psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table)),
                        (site,)).fetchall()


def test_compression_policy_compresses_old_chunks_and_queries_over_them_stay_right(
    conn: psycopg.Connection, writer: TelemetryWriter
) -> None:
    for days_ago in (12, 10, 9, 1):  # three chunks past compress_after (7 days), one recent
        start = _midnight(days_ago) + timedelta(hours=8)
        writer.write(decoded_messages("cmp", machines=4, per_machine=600, start=start))
    before_summary = conn.execute(SUMMARY_SQL, ("cmp",)).fetchone()
    before_window = read_telemetry_range(conn, "cmp", _midnight(10), _midnight(8))
    before_rollup = conn.execute(RAW_SQL, ("cmp",)).fetchall()
    assert len(before_window) == 2 * 4 * 600

    run_by_scheduler(conn, job_id(conn, "policy_compression", "telemetry"))

    chunks = conn.execute(
        "SELECT range_end < now() - INTERVAL '7 days', is_compressed FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'telemetry' AND range_start >= %s", (_midnight(12),)).fetchall()
    assert {old for old, _ in chunks} == {True, False}
    assert all(compressed for old, compressed in chunks if old), chunks
    assert not any(compressed for old, compressed in chunks if not old), "a recent chunk was compressed"
    stats = conn.execute(
        "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes)"
        " FROM chunk_compression_stats('telemetry') WHERE compression_status = 'Compressed'").fetchone()
    assert stats[0] > stats[1] > 0
    # the same answers from compressed chunks: totals, the reader's window (as services read it), rollups
    assert conn.execute(SUMMARY_SQL, ("cmp",)).fetchone() == before_summary
    after_window = read_telemetry_range(conn, "cmp", _midnight(10), _midnight(8))
    assert after_window.equals(before_window)
    assert conn.execute(RAW_SQL, ("cmp",)).fetchall() == before_rollup


def test_retention_policy_drops_chunks_past_400_days(conn: psycopg.Connection, writer: TelemetryWriter) -> None:
    ancient, kept = _midnight(500), _midnight(3)
    writer.write(decoded_messages("ret", machines=2, per_machine=100, start=ancient))
    writer.write(decoded_messages("ret", machines=2, per_machine=100, start=kept))
    old_chunks = conn.execute(
        "SELECT count(*) FROM show_chunks('telemetry', older_than => INTERVAL '400 days')").fetchone()[0]
    assert old_chunks >= 1

    run_by_scheduler(conn, job_id(conn, "policy_retention", "telemetry"))

    assert conn.execute(
        "SELECT count(*) FROM show_chunks('telemetry', older_than => INTERVAL '400 days')").fetchone()[0] == 0
    assert conn.execute("SELECT count(*), min(ts) FROM telemetry WHERE site_id = 'ret'").fetchone() == (200, kept)


def test_continuous_aggregate_refreshed_by_policy_real_time_and_late_data(
    conn: psycopg.Connection, writer: TelemetryWriter
) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    writer.write(decoded_messages("agg", machines=1, per_machine=600, start=start))  # 10 one-minute buckets
    raw = conn.execute(RAW_SQL, ("agg",)).fetchall()
    assert len(raw) == 10
    assert _materialised(conn, "agg") == []
    assert conn.execute(ROLLUP_SQL, ("agg",)).fetchall() == raw  # real time: nothing materialised, all shown

    refresh = job_id(conn, "policy_refresh_continuous_aggregate")
    run_by_scheduler(conn, refresh)
    assert _materialised(conn, "agg") == raw  # the policy materialised the ten buckets

    fresh = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=5)
    writer.write(decoded_messages("agg", machines=1, per_machine=30, start=fresh))
    rollup = conn.execute(ROLLUP_SQL, ("agg",)).fetchall()
    assert rollup[-1][1:3] == (fresh, 30) and rollup[:-1] == raw  # past the watermark: aggregated in real time

    # a late sample in an already materialised bucket: shown once the next refresh has run
    late = decoded_messages("agg", machines=1, per_machine=1, start=start + timedelta(seconds=30), payload=90_000,
                            first_seq=9_999)  # a new seq: not a duplicate
    assert writer.write(late).stored == 1
    run_by_scheduler(conn, refresh)
    first = conn.execute(ROLLUP_SQL, ("agg",)).fetchall()[0]
    assert first == ("M00", start, 61, 90_000.0)
    assert _materialised(conn, "agg")[0] == first


def test_real_time_aggregate_under_concurrent_ingest_and_refresh(
    conn: psycopg.Connection, timescaledb_url: str
) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    batches, errors = 20, []

    def ingest() -> None:
        w = TelemetryWriter(timescaledb_url)
        try:
            w.open()
            for n in range(batches):
                w.write(decoded_messages("live", machines=3, per_machine=60, start=start + timedelta(minutes=n)))
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            w.close()

    thread = threading.Thread(target=ingest)
    thread.start()
    seen = []
    refresh = job_id(conn, "policy_refresh_continuous_aggregate")
    conn.execute("SELECT alter_job(%s, next_start => now())", (refresh,))  # the scheduler refreshes meanwhile
    while thread.is_alive():
        seen.append(conn.execute("SELECT coalesce(sum(samples), 0) FROM telemetry_1m WHERE site_id = 'live'")
                    .fetchone()[0])
    thread.join()
    assert errors == []
    assert seen == sorted(seen), "the aggregate went backwards while ingest committed"
    run_by_scheduler(conn, refresh)
    assert conn.execute(ROLLUP_SQL, ("live",)).fetchall() == conn.execute(RAW_SQL, ("live",)).fetchall()
    assert conn.execute("SELECT sum(samples) FROM telemetry_1m WHERE site_id = 'live'").fetchone()[0] == batches * 180
