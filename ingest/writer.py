"""The batch writer: one transaction per batch, so a batch is either wholly stored or not acked.

Rows go by binary COPY into a temporary staging table, then ``INSERT ... ON CONFLICT DO
NOTHING`` into ``telemetry`` (a duplicate site/machine/ts/seq is stored once); rejects,
birth and status upserts and the ``NOTIFY`` share that transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np
import orjson
import psycopg
from psycopg.types.json import Jsonb

from ingest.columns import RowBlock
from ingest.contract import ROW_COLUMNS, ROW_TYPES, Decoded, Reject
from ingest.fields import MEASURED_FIELDS
from ingest.partitions import Partitions
from ingest.topics import telemetry_topic
from sitepulse.db import connect, has_timescaledb

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "sitepulse_telemetry"
NOTIFY_LIMIT = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more

_STAGING_TYPES = {
    "text": "text",
    "timestamptz": "timestamptz",
    "int8": "bigint",
    "float8": "double precision",
    "bool": "boolean",
}
STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS ingest_staging ("
    + ", ".join(f"{c} {_STAGING_TYPES[t]}" for c, t in zip(ROW_COLUMNS, ROW_TYPES, strict=True))
    + ") ON COMMIT DELETE ROWS"
)
DIRECT_COPY_SQL = f"COPY telemetry ({', '.join(ROW_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
DIRECT_TYPES = tuple("jsonb" if c == "extra" else t for c, t in zip(ROW_COLUMNS, ROW_TYPES, strict=True))
COPY_SQL = f"COPY ingest_staging ({', '.join(ROW_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
INSERT_SQL = (
    f"INSERT INTO telemetry ({', '.join(ROW_COLUMNS)})"
    f" SELECT {', '.join(c if c != 'extra' else 'extra::jsonb' for c in ROW_COLUMNS)} FROM ingest_staging"
    " ON CONFLICT DO NOTHING"
)
REJECT_SQL = (
    "INSERT INTO ingest_rejects (received_at, topic, payload, payload_bytes, reason, site_id, machine_id, digest)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (digest) DO NOTHING"
)
# a reject keeps this much of its payload (a person reads what the device sent from the start of it) and its
# length in payload_bytes; kept whole, bad messages of up to 1 MiB each filled the table a megabyte at a time
REJECT_PAYLOAD_KEPT = 4096
BIRTH_SQL = (
    "INSERT INTO machines AS m (site_id, machine_id, kind, model, rated_payload_kg, attributes, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (site_id, machine_id) DO UPDATE SET kind = EXCLUDED.kind, model = EXCLUDED.model,"
    " rated_payload_kg = EXCLUDED.rated_payload_kg, attributes = EXCLUDED.attributes,"
    " updated_at = EXCLUDED.updated_at"
)
STATUS_SQL = (
    "INSERT INTO machines AS m (site_id, machine_id, status, status_at) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (site_id, machine_id) DO UPDATE SET status = EXCLUDED.status,"
    " status_at = EXCLUDED.status_at,"
    " updated_at = now() WHERE m.status_at IS NULL OR m.status_at <= EXCLUDED.status_at"
)

# Newest sample per machine of a batch, upserted in one statement; a field missing from that sample keeps
# the stored value, and late samples never move a machine backwards.
LAST_FIELDS = MEASURED_FIELDS
LAST_SQL = (
    "INSERT INTO machine_last AS m (site_id, machine_id, ts, seq, " + ", ".join(LAST_FIELDS) + ", position_ts)"
    " SELECT u.site_id, u.machine_id, u.ts, u.seq, " + ", ".join(f"u.{f}" for f in LAST_FIELDS)
    + ", CASE WHEN u.lat IS NOT NULL AND u.lon IS NOT NULL THEN u.ts END"
    " FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::int8[], %s::float8[], %s::float8[], %s::float8[],"
    " %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::bool[])"
    " AS u(site_id, machine_id, ts, seq, " + ", ".join(LAST_FIELDS) + ")"
    " ON CONFLICT (site_id, machine_id) DO UPDATE SET ts = EXCLUDED.ts, seq = EXCLUDED.seq, "
    + ", ".join(f"{f} = COALESCE(EXCLUDED.{f}, m.{f})" for f in LAST_FIELDS)
    + ", position_ts = COALESCE(EXCLUDED.position_ts, m.position_ts), updated_at = now()"
    " WHERE (m.ts, m.seq) <= (EXCLUDED.ts, EXCLUDED.seq)"
)
_LAST_COLUMNS = (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12)  # ROW_COLUMNS positions of LAST_SQL's arrays


def newest_per_machine(rows: list[tuple]) -> list[tuple]:
    """The newest row (by ts, then seq) of each machine, in key order so concurrent writers lock alike."""
    newest: dict[tuple[str, str], tuple] = {}
    for row in rows:
        key = (row[0], row[1])
        seen = newest.get(key)
        if seen is None or row[2] > seen[2] or (row[2] == seen[2] and row[3] >= seen[3]):
            newest[key] = row
    return [newest[key] for key in sorted(newest)]


def last_value_params(rows: list[tuple] | RowBlock) -> list[list]:
    """LAST_SQL's column arrays for a batch's rows (tuples or a column block)."""
    if isinstance(rows, RowBlock):
        latest = [rows.row(i) for i in rows.newest_per_machine().tolist()]
    else:
        latest = newest_per_machine(rows)
    return [[row[i] for row in latest] for i in _LAST_COLUMNS]


def prepare(batch: Decoded) -> None:
    """Build a finished batch's COPY stream and last-value arrays ahead, in the decoding thread.

    Why: the committer thread is the serial step (it waits for PostgreSQL); what it need not compute,
    the decoding thread, idle while the committer works, computes meanwhile.
    """
    rows = batch.block()
    if len(rows):
        rows.ts_range()
        rows.copy_bytes(jsonb_extra=not rows.has_extra)
        rows.cache["last_values"] = last_value_params(rows)


DatabaseUnavailable = (psycopg.OperationalError, psycopg.InterfaceError)
Turn = Callable[[float | None], bool]  # wait (at most so many seconds, None: no limit) for this batch's turn
TURN_WAIT_S = 3.0


class _OutOfTurn(Exception):
    """An earlier batch did not commit in time; this batch's transaction is rolled back and done again."""


@dataclass(slots=True)
class WriteResult:
    """What one committed batch did."""

    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0


def notify_payload(sites: set[str]) -> str:
    """Comma-separated site ids, cut at a comma so it stays under PostgreSQL's NOTIFY limit."""
    text = ",".join(sorted(sites))
    if len(text.encode()) <= NOTIFY_LIMIT:
        return text
    return text[:NOTIFY_LIMIT].rsplit(",", 1)[0]


def reject_digest(reject: Reject) -> bytes:
    """Identity of a reject, so a re-delivered bad message is stored once (of its whole payload, so two payloads
    that differ only after the part kept are two rejects)."""
    digest = hashlib.sha256(reject.topic.encode("utf-8", "replace"))
    digest.update(b"\0")
    digest.update(reject.payload)
    digest.update(b"\0")
    digest.update(reject.reason.encode("utf-8", "replace"))
    return digest.digest()


def _clean(text: str) -> str:
    return text.replace("\x00", "\\0")


class TelemetryWriter:
    """Owns one database connection and writes decoded batches through it."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.conn: psycopg.Connection | None = None
        self.partitions = Partitions(enabled=True)

    def open(self) -> psycopg.Connection:
        """(Re)connect, prepare the staging table and learn the schema flavour."""
        self.close()
        conn = connect(self.database_url, autocommit=True)
        conn.execute(STAGING_DDL)
        self.partitions.enabled = not has_timescaledb(conn)
        self.partitions.load(conn)
        self.conn = conn
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> TelemetryWriter:
        """Open for a ``with`` block (tools and tests that write a few batches and are done)."""
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, batch: Decoded, turn: Turn | None = None, *, direct_extra: bool = False) -> WriteResult:
        """Commit one batch; raises a DatabaseUnavailable error if the server cannot be reached.

        ``turn`` (several writers side by side, ``ingest.worker``): called after the COPY, before anything
        else of the transaction, it waits until every earlier batch is committed, so rejects, births,
        statuses and commits keep arrival order while the COPYs overlap. If it waits longer than
        ``TURN_WAIT_S`` (this batch's rows may be blocking an earlier batch's duplicate keys), the
        transaction is rolled back and done again once the earlier batches are in.

        ``direct_extra``: rows with extra fields may take the direct COPY too (their extra texts are JSON built by
        the caller, e.g. the history importer); by default they go through staging.
        """
        conn = self.conn if self.conn is not None and not self.conn.closed else self.open()
        started = perf_counter()
        rows = batch.block()
        if len(rows):
            self.partitions.ensure(conn, *rows.ts_range())
        direct = direct_extra or not rows.has_extra
        try:
            while True:
                try:
                    stored = self._transaction(conn, batch, rows, direct=direct, turn=turn)
                    break
                except psycopg.errors.UniqueViolation:  # a re-delivery or duplicate: the de-duplicating path
                    if not direct:
                        raise
                    direct = False
                except _OutOfTurn:
                    assert turn is not None
                    turn(None)  # earlier batches are all committed now: none of them can wait for this one
        except psycopg.DataError as exc:
            log.warning("database refused a batch (%s); writing it sample by sample", exc)
            stored = self._isolating(conn, batch, turn)
        return WriteResult(
            len(rows), stored, len(rows) - stored, len(batch.rejects), perf_counter() - started
        )

    def _transaction(
        self,
        conn: psycopg.Connection,
        batch: Decoded,
        rows: RowBlock,
        extra_rejects: list[Reject] | None = None,
        *,
        direct: bool = False,
        turn: Turn | None = None,
    ) -> int:
        """One transaction: the rows, then (in turn) everything else in one pipelined round trip, then COMMIT."""
        stored = 0
        with conn.transaction(), conn.cursor() as cur:
            if len(rows):
                stored = self._copy_rows(cur, rows, direct)
            if turn is not None and not turn(TURN_WAIT_S):
                raise _OutOfTurn
            with conn.pipeline():
                if len(rows):
                    cur.execute(LAST_SQL, rows.cache.get("last_values") or last_value_params(rows))
                rejects = batch.rejects + (extra_rejects or [])
                if rejects:
                    cur.executemany(
                        REJECT_SQL,
                        [
                            (
                                r.received_at,
                                _clean(r.topic),
                                r.payload[:REJECT_PAYLOAD_KEPT],
                                len(r.payload),
                                _clean(r.reason),
                                r.site_id,
                                r.machine_id,
                                reject_digest(r),
                            )
                            for r in rejects
                        ],
                    )
                if batch.births:
                    cur.executemany(
                        BIRTH_SQL,
                        [
                            (
                                b.site_id,
                                b.machine_id,
                                b.kind,
                                b.model,
                                b.rated_payload_kg,
                                Jsonb(b.attributes),
                                b.received_at,
                            )
                            for b in batch.births
                        ],
                    )
                if batch.statuses:
                    cur.executemany(
                        STATUS_SQL, [(s.site_id, s.machine_id, s.status, s.received_at) for s in batch.statuses]
                    )
                if stored:
                    cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, notify_payload(batch.sites)))
        return stored

    @staticmethod
    def _copy_rows(cur: psycopg.Cursor, rows: RowBlock, direct: bool) -> int:
        """Store rows once: COPY straight into telemetry (``direct``), or via staging + ON CONFLICT.

        The direct COPY is the common case and costs half as much; a unique violation (re-delivery,
        duplicate) aborts its transaction and ``write`` runs it again on the de-duplicating path (no
        savepoint: two round trips fewer per batch). The binary COPY stream is built by
        ``RowBlock.copy_bytes`` (numpy), usually ahead by :func:`prepare` in the decoding thread.
        """
        if direct:
            with cur.copy(DIRECT_COPY_SQL) as copy:
                copy.write(rows.copy_bytes(jsonb_extra=True))
            return len(rows)
        with cur.copy(COPY_SQL) as copy:
            copy.write(rows.copy_bytes(jsonb_extra=False))
        cur.execute(INSERT_SQL)
        return cur.rowcount

    def _isolating(self, conn: psycopg.Connection, batch: Decoded, turn: Turn | None = None) -> int:
        """Find the rows the database refuses, reject them, and store the rest (rare, slow path)."""
        block = batch.block()
        good: list[int] = []
        refused: list[Reject] = []
        for i in range(len(block)):
            try:
                with conn.transaction(force_rollback=True), conn.cursor() as cur:
                    self._copy_rows(cur, block.take([i]), direct=False)
                good.append(i)
            except psycopg.DataError as exc:
                row = block.row(i)
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raw = orjson.dumps(dict(zip(ROW_COLUMNS, row, strict=True)), default=str)
                refused.append(
                    Reject(
                        row[4],
                        telemetry_topic(row[0], row[1]),
                        raw,
                        f"database refused the sample: {reason}",
                        row[0],
                        row[1],
                    )
                )
        if turn is not None:
            turn(None)
        return self._transaction(conn, batch, block.take(np.array(good, np.int64)), refused, direct=False)


def insert_telemetry(conn: psycopg.Connection, rows: pd.DataFrame) -> int:
    """Store telemetry rows (ingest's columns) in one transaction as the writer does: duplicates stored once,
    the machines' last values (``machine_last``) kept up to date. For test harnesses and tools that hold a frame
    (evaluation/stored.py); the consumers write through ``TelemetryWriter``."""
    if rows.empty:
        return 0
    Partitions(enabled=True).ensure(conn, rows["ts"].min(), rows["ts"].max())
    columns = [c for c in ROW_COLUMNS if c in rows.columns and c != "extra"]
    values = rows[columns].astype(object).where(rows[columns].notna(), None)
    tuples = list(values.itertuples(index=False, name=None))
    full = values.reindex(columns=list(ROW_COLUMNS)).astype(object)
    full = full.where(full.notna(), None)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO telemetry ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
            " ON CONFLICT DO NOTHING",
            tuples,
        )
        cur.execute(LAST_SQL, last_value_params(list(full.itertuples(index=False, name=None))))
    return len(rows)
