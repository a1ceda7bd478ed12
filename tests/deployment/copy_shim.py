"""COPY replayed as plain statements, for the TimescaleDB-WASM server only (it crashes on COPY).

The contract tests run the application's real functions (the ingest writer, the service runner's
``write_outputs``, the usage writer). Those write with COPY; on the WASM server this shim turns a
``COPY table (columns) FROM STDIN`` into ``INSERT INTO table (columns) VALUES (...)`` with the same
rows through ``executemany``, inside the caller's transaction. Statement text, table, columns,
values and transaction boundaries stay the application's own; only the transport differs, and
constraint errors (a duplicate key) surface as they would from COPY. ``COPY (query) TO STDOUT
WITH (FORMAT csv, HEADER true)`` (exports) runs the query itself and hands back the same CSV.
Connections to any other server keep the real COPY.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

COPY_FROM = re.compile(r"^\s*COPY\s+(?P<table>.+?)\s*\((?P<columns>[^)]*)\)\s+FROM\s+STDIN\b", re.I | re.S)
COPY_TO_CSV = re.compile(r"^\s*COPY\s+\((?P<query>.+)\)\s+TO\s+STDOUT\s+WITH\s+\(FORMAT csv, HEADER true\)\s*$",
                         re.I | re.S)


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "t" if value else "f"  # PostgreSQL's CSV spelling of booleans
    return "" if value is None else value


def query_as_csv(cursor: psycopg.Cursor, query: str, params: Any) -> Iterator[bytes]:
    """The rows of ``query`` as COPY's CSV with a header, one chunk per row."""
    cursor.execute(query, params)
    names = [d.name for d in cursor.description or []]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in cursor.fetchall():
        writer.writerow([_csv_value(v) for v in row])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue().encode()


class InsertCopy:
    """Collects ``write_row`` calls; ``flush`` inserts them."""

    def __init__(self, cursor: psycopg.Cursor, table: str, columns: list[str]) -> None:
        self.cursor = cursor
        self.table = table
        self.columns = columns
        self.rows: list[list[Any]] = []

    def set_types(self, types: Any) -> None:  # the INSERT adapts each Python value itself
        pass

    def write_row(self, row: Any) -> None:
        self.rows.append([Jsonb(v) if isinstance(v, dict | list) else v for v in row])

    def write(self, data: Any) -> None:
        raise NotImplementedError("the COPY shim supports write_row only")

    def flush(self) -> None:
        if not self.rows:
            return
        placeholders = ", ".join(["%s"] * len(self.columns))
        statement = f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({placeholders})"
        self.cursor.executemany(statement, self.rows)
        self.rows.clear()


class CopyShim:
    """Patches ``psycopg.Cursor.copy`` for connections to one port; counts what it replaced."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.replaced: list[str] = []
        self._original = psycopg.Cursor.copy

    def install(self) -> None:
        shim = self
        original = self._original

        @contextmanager
        def copy(cursor: psycopg.Cursor, statement: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
            if cursor.connection.info.port != shim.port:
                with original(cursor, statement, params, **kwargs) as real:
                    yield real
                return
            text = statement.as_string(cursor.connection) if isinstance(statement, sql.Composable) else statement
            export = COPY_TO_CSV.match(text)
            if export:
                yield query_as_csv(cursor, export["query"], params)
                shim.replaced.append("export")
                return
            match = COPY_FROM.match(text)
            if not match:
                raise AssertionError(f"COPY shim cannot translate: {text}")
            columns = [c.strip() for c in match["columns"].split(",")]
            writer = InsertCopy(cursor, match["table"], columns)
            yield writer
            writer.flush()
            shim.replaced.append(match["table"])

        psycopg.Cursor.copy = copy  # type: ignore[method-assign]

    def uninstall(self) -> None:
        psycopg.Cursor.copy = self._original  # type: ignore[method-assign]
