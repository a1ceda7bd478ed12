"""Monthly telemetry partitions on plain PostgreSQL, created on demand before a batch needs them.

There is no DEFAULT partition: rows in it would block creating the matching monthly partition
later. Instead the writer calls ``ensure`` with the batch's ts range before its COPY; creation
is serialised across writers with an advisory lock and is idempotent (IF NOT EXISTS).
On TimescaleDB the hypertable makes its own chunks and this does nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

LOCK_KEY = 7_355_609  # next to the migrations lock (sitepulse.migrations.LOCK_KEY)


def month_start(ts: datetime) -> tuple[int, int]:
    """(year, month) of a timestamp in UTC."""
    utc = ts.astimezone(UTC)
    return utc.year, utc.month


def _next(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def partition_name(year: int, month: int) -> str:
    return f"telemetry_p{year:04d}{month:02d}"


class Partitions:
    """Knows which monthly partitions exist and creates missing ones (idempotent, concurrent-safe)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._known: set[tuple[int, int]] = set()

    def load(self, conn: psycopg.Connection) -> None:
        """Read the partitions that already exist."""
        self._known.clear()
        if not self.enabled:
            return
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'telemetry'::regclass"
        ).fetchall()
        for (name,) in rows:
            if name.startswith("telemetry_p") and len(name) == 17 and name[11:].isdigit():
                self._known.add((int(name[11:15]), int(name[15:17])))

    def ensure(self, conn: psycopg.Connection, low: datetime, high: datetime) -> list[str]:
        """Create every monthly partition covering low..high that is missing; returns those created."""
        if not self.enabled:
            return []
        wanted: list[tuple[int, int]] = []
        month, last = month_start(low), month_start(high)
        while month <= last:
            if month not in self._known:
                wanted.append(month)
            month = _next(*month)
        if not wanted:
            return []
        created = []
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            for year, mon in wanted:
                start = datetime(year, mon, 1, tzinfo=UTC)
                end = datetime(*_next(year, mon), 1, tzinfo=UTC)
                name = partition_name(year, mon)
                exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0]
                if exists is None:
                    conn.execute(
                        f"CREATE TABLE {name} PARTITION OF telemetry"
                        f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                    )
                    created.append(name)
        self._known.update(wanted)
        return created
