"""Which storage holds telemetry: TimescaleDB (chunks, compression, policies) or plain PostgreSQL.

Shown by ``sitepulse status`` and printed when ``serve`` starts, so nobody runs plain PostgreSQL in
production by accident: there telemetry is never compressed, old data is never dropped and the
1-minute rollup is an ordinary view. The TimescaleDB contract tests run this SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

# Storage in force: TimescaleDB's chunks and compression, or plain PostgreSQL's partitions.
CHUNKS_SQL = (
    "SELECT count(*), count(*) FILTER (WHERE is_compressed) FROM timescaledb_information.chunks"
    " WHERE hypertable_schema = 'public' AND hypertable_name = 'telemetry'"
)
COMPRESSION_SQL = (
    "SELECT coalesce(sum(before_compression_total_bytes), 0)::float8, coalesce(sum(after_compression_total_bytes),"
    " 0)::float8 FROM chunk_compression_stats('telemetry') WHERE compression_status = 'Compressed'"
)
HYPERTABLE_SIZE_SQL = "SELECT coalesce(hypertable_size('telemetry'), 0)"
POLICIES_SQL = (
    "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs"
    " WHERE hypertable_name IN ('telemetry', 'telemetry_1m') OR (proc_name = 'policy_refresh_continuous_aggregate'"
    " AND hypertable_name LIKE '_materialized_hypertable_%%') ORDER BY job_id"
)
PARTITIONS_SQL = (
    "SELECT count(*), coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
    " WHERE inhparent = 'telemetry'::regclass"
)
PLAIN_WARNING = ("plain PostgreSQL: telemetry is never compressed, old data is not dropped and the 1-minute rollup is"
                 " a plain view; run TimescaleDB in production (README: Pointing at a real TimescaleDB)")


@dataclass
class Storage:
    """How telemetry is stored: engine, chunks or partitions, size, compression and policies."""

    engine: str
    telemetry_bytes: int
    chunks: int  # hypertable chunks, or monthly partitions on plain PostgreSQL
    compressed_chunks: int = 0
    compression_ratio: float | None = None  # bytes before / after, over the compressed chunks
    policies: list[str] = field(default_factory=list)
    warning: str | None = None

    def describe(self) -> str:
        """One line for a terminal."""
        if self.warning:
            return f"{self.engine}, {self.chunks} partitions, {_size(self.telemetry_bytes)}: {self.warning}"
        ratio = f", {self.compression_ratio:.1f}x" if self.compression_ratio else ""
        return (f"{self.engine}: telemetry hypertable {self.chunks} chunks ({self.compressed_chunks} compressed"
                f"{ratio}), {_size(self.telemetry_bytes)}; policies: {', '.join(self.policies) or 'none'}")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _policy(name: str, config: dict[str, Any]) -> str:
    if name == "policy_compression":
        return f"compress after {config.get('compress_after')}"
    if name == "policy_retention":
        return f"drop after {config.get('drop_after')}"
    if name == "policy_refresh_continuous_aggregate":
        return f"refresh telemetry_1m ({config.get('start_offset')} .. {config.get('end_offset')})"
    return name


def collect_storage(conn: psycopg.Connection) -> Storage:
    """The storage in force for telemetry, so nobody runs plain PostgreSQL in production unawares."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    timescale_version = row[0] if row else None
    if timescale_version is None:
        partitions, size = conn.execute(PARTITIONS_SQL).fetchone()
        return Storage("plain PostgreSQL", int(size), int(partitions), warning=PLAIN_WARNING)
    chunks, compressed = conn.execute(CHUNKS_SQL).fetchone()
    before, after = conn.execute(COMPRESSION_SQL).fetchone()
    policies = [_policy(name, config if isinstance(config, dict) else orjson.loads(config or "{}"))
                for name, _table, config in conn.execute(POLICIES_SQL)]
    return Storage(f"TimescaleDB {timescale_version}", int(conn.execute(HYPERTABLE_SIZE_SQL).fetchone()[0]),
                   int(chunks), int(compressed), round(before / after, 2) if after else None, policies)
