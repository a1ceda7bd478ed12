"""Helpers of the TimescaleDB tier; its server fixtures live with the others in tests/conftest.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from ingest.contract import Decoded, Decoder


def decoded_messages(site: str, machines: int, per_machine: int, start: datetime, payload: float = 1000.0,
                     step_s: float = 1.0, first_seq: int = 0) -> Decoded:
    """A batch decoded by ingest's real decoder from contract-shaped MQTT messages."""
    decoder, out = Decoder(), Decoded()
    now = datetime.now(UTC)
    for m in range(machines):
        samples = [
            {"ts": (start + timedelta(seconds=s * step_s)).isoformat(), "seq": first_seq + s, "lat": 59.0 + s * 1e-5,
             "lon": 18.0, "speed_kmh": 12.5, "payload_kg": payload + s, "fuel_used_l": 100 + s * 0.01,
             "engine_on": True}
            for s in range(per_machine)
        ]
        decoder.decode_into(out, f"sites/{site}/machines/M{m:02d}/telemetry", orjson.dumps(samples), now)
    return out


def job_id(conn: psycopg.Connection, proc_name: str, hypertable: str | None = None) -> int:
    """The id of one policy job (compression, retention or continuous-aggregate refresh)."""
    sql = "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s"
    params: tuple = (proc_name,)
    if hypertable:
        sql += " AND hypertable_name = %s"
        params += (hypertable,)
    return conn.execute(sql, params).fetchone()[0]


def run_by_scheduler(conn: psycopg.Connection, job: int, timeout_s: float = 90.0) -> None:
    """Ask TimescaleDB's background scheduler to run ``job`` now and wait for a successful finish.

    Not ``CALL run_job``: the point is that the policy runs as it would in production, in a
    background worker of the scheduler, concurrently with whatever the test is doing.
    """
    before = conn.execute(
        "SELECT coalesce(total_successes, 0), coalesce(total_failures, 0) FROM timescaledb_information.job_stats"
        " WHERE job_id = %s", (job,)).fetchone() or (0, 0)
    conn.execute("SELECT alter_job(%s, next_start => now())", (job,))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT total_successes, total_failures FROM timescaledb_information.job_stats WHERE job_id = %s",
            (job,)).fetchone()
        if row and row[0] > before[0]:
            return
        if row and row[1] > before[1]:
            error = conn.execute(
                "SELECT err_message FROM timescaledb_information.job_errors WHERE job_id = %s"
                " ORDER BY finish_time DESC LIMIT 1", (job,)).fetchone()
            raise AssertionError(f"job {job} failed in the scheduler: {error[0] if error else 'no error recorded'}")
        time.sleep(0.2)
    raise AssertionError(f"the scheduler did not run job {job} within {timeout_s:.0f} s")
