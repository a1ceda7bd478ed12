"""Streaming a site's telemetry and service tables out as CSV or Parquet in bounded memory.

CSV is PostgreSQL's own ``COPY (query) TO STDOUT`` passed through chunk by chunk. Parquet
reads a server-side cursor ``CHUNK_ROWS`` rows at a time and writes each chunk as a row
group into a sink that hands its bytes to the response as soon as they are written; so a
month of data never sits in memory, on either side.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import orjson
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ingest.fields import SAMPLE_FIELDS
from registry.spreadsheet import TEXT_TYPES, inert_sql

CHUNK_ROWS = 50_000
TELEMETRY_COLUMNS = ("site_id", "machine_id", *SAMPLE_FIELDS)
TIME_COLUMN_PREFERENCE = ("ts", "at", "minute", "hour", "loaded_at", "dumped_at", "entered_at", "started_at",
                          "queued_from", "created_at")
HIDDEN_COLUMNS = ("run_seq",)  # the runner's bookkeeping, not data

_ARROW_TYPES = {
    "text": pa.string(), "character varying": pa.string(), "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"), "double precision": pa.float64(), "real": pa.float32(),
    "bigint": pa.int64(), "integer": pa.int32(), "smallint": pa.int16(), "boolean": pa.bool_(), "date": pa.date32(),
    "numeric": pa.float64(),
}


class ExportQuery:
    """A SELECT over one table with a site filter, an optional time window, its columns and their types."""

    def __init__(self, query: sql.Composable, params: dict[str, Any], columns: list[tuple[str, str]]) -> None:
        self.query = query
        self.params = params
        self.columns = columns  # (name, PostgreSQL type name)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(name, _ARROW_TYPES.get(kind, pa.string())) for name, kind in self.columns])


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    """A table's columns and type names in order (empty when it does not exist)."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position", (schema, table)).fetchall()
    return [(name, kind) for name, kind in rows]


# the site's zone names (sitepulse.sites.zone_names) travel as one parameter: the query reads no table of the kernel
ZONE_NAMES = sql.SQL("WITH zone_names AS (SELECT key AS id, value AS name FROM jsonb_each_text(%(zone_names)s)) ")


def zone_columns(columns: list[tuple[str, str]]) -> list[str]:
    """Text columns holding a zone id (``zone``, ``load_zone``, ...) that get the drawn name beside them."""
    names = {n for n, _ in columns}
    return [n for n, k in columns if (n == "zone" or n.endswith("_zone")) and k == "text"
            and f"{n}_name" not in names]


def build_query(schema: str, table: str, columns: list[tuple[str, str]], site_id: str, start: datetime | None,
                end: datetime | None, order: tuple[str, ...] | None = None,
                zone_names: Mapping[str, str] | None = None) -> ExportQuery:
    """The export SELECT: the site's rows within [start, end) on the table's time column, in time order; each
    zone-id column is followed by ``<column>_name``, the zone's name as the site manager drew it (``zone_names``,
    zone id -> name, from sitepulse.sites.zone_names; the id where a zone is not named there)."""
    shown = [(n, k) for n, k in columns if n not in HIDDEN_COLUMNS]
    names = {n for n, _ in shown}
    time_column = next((c for c in TIME_COLUMN_PREFERENCE if c in names), None) or next(
        (n for n, k in shown if k.startswith("timestamp")), None)
    where = [sql.SQL("t.site_id = %(site)s")]
    if time_column is not None and start is not None:
        where.append(sql.SQL("t.{} >= %(start)s").format(sql.Identifier(time_column)))
    if time_column is not None and end is not None:
        where.append(sql.SQL("t.{} < %(end)s").format(sql.Identifier(time_column)))
    order = order or ((time_column,) if time_column else ())
    zones = zone_columns(shown)
    selected: list[sql.Composable] = []
    output: list[tuple[str, str]] = []
    joins: list[sql.Composable] = []
    for name, kind in shown:
        selected.append(sql.SQL("t.{}").format(sql.Identifier(name)))
        output.append((name, kind))
        if name in zones:
            alias = sql.Identifier(f"zn{len(joins)}")
            joins.append(sql.SQL(" LEFT JOIN zone_names {a} ON {a}.id = t.{c}").format(a=alias,
                                                                                    c=sql.Identifier(name)))
            selected.append(sql.SQL("coalesce({a}.name, t.{c}) AS {n}").format(
                a=alias, c=sql.Identifier(name), n=sql.Identifier(f"{name}_name")))
            output.append((f"{name}_name", "text"))
    query = sql.SQL("{with_}SELECT {cols} FROM {table} t{joins} WHERE {where}{order}").format(
        with_=ZONE_NAMES if zones else sql.SQL(""),
        cols=sql.SQL(", ").join(selected), table=sql.Identifier(schema, table), joins=sql.SQL("").join(joins),
        where=sql.SQL(" AND ").join(where),
        order=sql.SQL(" ORDER BY ") + sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in order)
        if order else sql.SQL(""))
    params = {"site": site_id, "start": start, "end": end, "zone_names": Jsonb(dict(zone_names or {}))}
    return ExportQuery(query, params, output)


def csv_query(export: ExportQuery) -> sql.Composable:
    """The export's SELECT with every text column made inert for spreadsheets (zone names are user text)."""
    cells = [inert_sql(sql.SQL("q.{}").format(sql.Identifier(name))) + sql.SQL(" AS {}").format(sql.Identifier(name))
             if kind in TEXT_TYPES else sql.SQL("q.{}").format(sql.Identifier(name)) for name, kind in export.columns]
    return sql.SQL("SELECT {} FROM ({}) q").format(sql.SQL(", ").join(cells), export.query)


def csv_chunks(pool: ConnectionPool, export: ExportQuery) -> Iterator[bytes]:
    """CSV with a header row, straight from COPY TO STDOUT (text cells inert for spreadsheets)."""
    copy_sql = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(csv_query(export))
    with pool.connection() as conn, conn.cursor() as cur, cur.copy(copy_sql, export.params) as copy:
        for chunk in copy:
            yield bytes(chunk)


class _Drain(io.RawIOBase):
    """A write-only file whose written bytes are collected until the caller takes them."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _column(values: list[Any], kind: str, arrow_type: pa.DataType) -> pa.Array:
    if kind in ("jsonb", "json"):
        values = [None if v is None else orjson.dumps(v).decode() for v in values]
    elif arrow_type == pa.string():
        values = [None if v is None else str(v) for v in values]
    elif kind == "numeric":
        values = [None if v is None else float(v) for v in values]
    return pa.array(values, type=arrow_type)


def parquet_chunks(pool: ConnectionPool, export: ExportQuery, chunk_rows: int | None = None) -> Iterator[bytes]:
    """Parquet, one row group per ``chunk_rows`` (default ``CHUNK_ROWS``) rows read from a server-side cursor."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    schema = export.arrow_schema
    sink = _Drain()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    try:
        with pool.connection() as conn, conn.transaction(), conn.cursor(name="sitepulse_export") as cur:
            cur.itersize = chunk_rows
            cur.execute(export.query, export.params)
            while rows := cur.fetchmany(chunk_rows):
                arrays = [_column([r[i] for r in rows], kind, schema.field(i).type)
                          for i, (_, kind) in enumerate(export.columns)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                if data := sink.take():
                    yield data
    finally:
        writer.close()
    yield sink.take()
