"""Recorded files read in bounded chunks: CSV (also .gz) by pyarrow's streaming reader, Parquet by row groups,
JSON lines a block of lines at a time. Memory stays at a few chunks whatever the file's size.

Row numbers count data rows from 1 (a CSV header is not a row). A CSV line with the wrong number of columns and a
JSON line that is not JSON are rejects of their own (the CSV one named by its line number).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from decoders.history.convert import Chunk
from decoders.history.mapping import FileMapping
from decoders.mapped_json.mapping import compile_path, get_path
from sitepulse.errors import ConfigError, InvalidInput

SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "jsonl"}
CSV_BLOCK_BYTES = 1 << 20  # pyarrow reads ahead a few blocks: 4 MiB blocks held 150 MB more than 1 MiB ones
CHUNK_ROWS = 20_000
PARQUET_BATCH_ROWS = 32_768
JSON_LINES_PER_CHUNK = 50_000


@dataclass
class Problem:
    """A row the reader itself could not read (before any mapping): its number and why."""

    row: int
    text: str
    reason: str
    where: str = "row"


def file_format(path: Path) -> tuple[str, bool] | None:
    """(format, gzipped) from the file name, or None for a file of no known kind."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if gzipped:
        suffixes = suffixes[:-1]
    kind = SUFFIXES.get(suffixes[-1]) if suffixes else None
    return (kind, gzipped) if kind else None


def find_files(paths: list[Path]) -> list[Path]:
    """The files to import: each file given, and every file of a known kind under each folder (sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and file_format(p)))
        elif path.is_file():
            if not file_format(path):
                raise InvalidInput(f"{path}: not a CSV (.csv, .csv.gz), Parquet (.parquet) or JSON-lines (.jsonl) "
                                   "file")
            found.append(path)
        else:
            raise InvalidInput(f"{path}: no such file or folder")
    return found


class _Counting(io.RawIOBase):
    """A file read through, counting the bytes, so the progress bar knows how far a (gzipped) file is."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


@dataclass
class Source:
    """One file to import and how far it has been read."""

    path: Path
    kind: str
    gzipped: bool
    size: int
    _counter: _Counting | None = field(default=None, repr=False)
    _fraction: float = 0.0

    @classmethod
    def of(cls, path: Path) -> Source:
        kind, gzipped = file_format(path) or ("", False)
        return cls(path, kind, gzipped, path.stat().st_size)

    def bytes_read(self) -> int:
        if self._counter is not None:
            return min(self._counter.count, self.size)
        return int(self._fraction * self.size)

    def _open(self) -> IO[bytes]:
        self._counter = _Counting(open(self.path, "rb"))  # noqa: SIM115 (closed by the reader that wraps it)
        buffered = io.BufferedReader(self._counter, 1 << 20)
        return gzip.GzipFile(fileobj=buffered, mode="rb") if self.gzipped else buffered

    def check(self, mapping: FileMapping) -> None:
        """Fail before anything is written if the file lacks a column the mapping reads (JSON lines: per row)."""
        if self.kind == "csv":
            _check_columns(mapping, self._header(mapping), self.path)
        elif self.kind == "parquet":
            _check_columns(mapping, self._parquet_file().schema_arrow.names, self.path)

    def _delimiter(self, mapping: FileMapping) -> str:
        return "\t" if self.path.name.lower().removesuffix(".gz").endswith(".tsv") else mapping.csv.delimiter

    def _header(self, mapping: FileMapping) -> list[str]:
        with self._open() as head:
            first = head.readline().decode("utf-8-sig", "replace")
        return next(csv.reader([first], delimiter=self._delimiter(mapping), quotechar=mapping.csv.quote), [])

    def _parquet_file(self) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"{self.path}: not a readable Parquet file ({exc})") from None

    def chunks(self, mapping: FileMapping, skip_rows: int = 0) -> Iterator[tuple[Chunk, list[Problem]]]:
        """The file's rows after the first ``skip_rows``, in chunks, each with the rows its reader refused."""
        if self.kind == "csv":
            return self._csv(mapping, skip_rows)
        if self.kind == "parquet":
            return self._parquet(mapping, skip_rows)
        return self._json_lines(mapping, skip_rows)

    # --- CSV ------------------------------------------------------------------------------------------------
    def _csv(self, mapping: FileMapping, skip_rows: int) -> Iterator[tuple[Chunk, list[Problem]]]:
        delimiter = self._delimiter(mapping)
        wanted = _check_columns(mapping, self._header(mapping), self.path)
        problems: list[Problem] = []

        def refuse(row: Any) -> str:
            problems.append(Problem(row.number or 0, row.text or "", f"has {row.actual_columns} columns, the header "
                                    f"has {row.expected_columns}", "line"))
            return "skip"

        stream = self._open()
        reader = pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, encoding="utf8", use_threads=False),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char=mapping.csv.quote,
                                              newlines_in_values=False, invalid_row_handler=refuse),
            convert_options=pa_csv.ConvertOptions(
                include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string()), strings_can_be_null=True,
                quoted_strings_can_be_null=True),
        )
        try:
            yield from self._batches(mapping, (b for b in reader), skip_rows, problems)
        finally:
            reader.close()
            stream.close()

    def _batches(self, mapping: FileMapping, batches: Iterator[pa.RecordBatch], skip_rows: int,
                 problems: list[Problem], row: int = 0) -> Iterator[tuple[Chunk, list[Problem]]]:
        """Chunks of about CHUNK_ROWS rows of ``batches`` (whose first row is data row ``row`` + 1), after the
        first ``skip_rows`` rows. Small reads, larger chunks: the CSV reader holds little, a chunk costs one
        transaction."""
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in batches:
            if row + pending_rows + batch.num_rows <= skip_rows:
                row += batch.num_rows
                problems.clear()
                continue
            if row + pending_rows < skip_rows:
                batch = batch.slice(skip_rows - row)
                row = skip_rows
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= CHUNK_ROWS:
                yield self._chunk(mapping, pending, row, problems)
                row += pending_rows
                pending, pending_rows = [], 0
        if pending_rows or problems:
            yield self._chunk(mapping, pending, row, problems)

    @staticmethod
    def _chunk(mapping: FileMapping, batches: list[pa.RecordBatch], row: int,
               problems: list[Problem]) -> tuple[Chunk, list[Problem]]:
        if len(batches) == 1:
            batch = batches[0]
        elif batches:
            batch = pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
        else:
            batch = pa.RecordBatch.from_pylist([])
        batch = batch.rename_columns([mapping.rename.get(c, c) for c in batch.schema.names])
        refused = list(problems)
        problems.clear()
        return _table_chunk(batch, row + 1), refused

    # --- Parquet --------------------------------------------------------------------------------------------
    def _parquet(self, mapping: FileMapping, skip_rows: int) -> Iterator[tuple[Chunk, list[Problem]]]:
        parquet = self._parquet_file()
        wanted = _check_columns(mapping, parquet.schema_arrow.names, self.path)
        total = max(parquet.metadata.num_rows, 1)
        groups, row = [], 0
        for index in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(index).num_rows
            if row + rows > skip_rows:
                groups.append(index)
            else:
                row += rows
        done = row

        def batches() -> Iterator[pa.RecordBatch]:
            nonlocal done
            for batch in parquet.iter_batches(PARQUET_BATCH_ROWS, row_groups=groups, columns=wanted):
                done += batch.num_rows
                self._fraction = done / total
                yield batch

        yield from self._batches(mapping, batches(), skip_rows, [], row)

    # --- JSON lines -----------------------------------------------------------------------------------------
    def _json_lines(self, mapping: FileMapping, skip_rows: int) -> Iterator[tuple[Chunk, list[Problem]]]:
        with self._open() as stream:
            row = 0
            while True:
                lines = stream.readlines(JSON_LINES_PER_CHUNK * 200)
                if not lines:
                    return
                lines = [line for line in lines if line.strip()]
                if row + len(lines) <= skip_rows:
                    row += len(lines)
                    continue
                if row < skip_rows:
                    lines = lines[skip_rows - row:]
                    row = skip_rows
                docs: list[dict] = []
                numbers: list[int] = []
                problems: list[Problem] = []
                for offset, line in enumerate(lines):
                    try:
                        doc = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        problems.append(Problem(row + offset + 1, line[:4096].decode("utf-8", "replace"),
                                                f"not valid JSON: {str(exc)[:200]}"))
                        continue
                    if type(doc) is not dict:
                        problems.append(Problem(row + offset + 1, line[:4096].decode("utf-8", "replace"),
                                                "is not a JSON object"))
                        continue
                    docs.append({mapping.rename.get(k, k): v for k, v in doc.items()} if mapping.rename else doc)
                    numbers.append(row + offset + 1)
                row += len(lines)
                yield _docs_chunk(docs, numbers), problems


def _check_columns(mapping: FileMapping, names: list[str], path: Path) -> list[str]:
    """The file's columns the mapping reads; a missing one is one line naming the option and the column."""
    present = set(names)
    for column, option in mapping.columns().items():
        if column not in present:
            shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
            raise ConfigError("--mapping", f"{option}: column {column!r} is not in {path.name} (its columns: {shown})")
    return list(mapping.columns())


def _column(batch: pa.RecordBatch, path: str) -> pa.Array:
    keys = compile_path(path)
    values: Any = batch.column(str(keys[0]))
    for key in keys[1:]:
        if pa.types.is_struct(values.type):
            values = pc.struct_field(values, str(key))
        elif pa.types.is_list(values.type) and isinstance(key, int):
            values = pc.list_element(values, key)
        else:
            return pa.nulls(len(batch), pa.string())
    return values


def _table_chunk(batch: pa.RecordBatch, first_row: int) -> Chunk:
    return Chunk(first_row, batch.num_rows, lambda path: _column(batch, path),
                 lambda i: batch.slice(i, 1).to_pylist()[0])


def _docs_chunk(docs: list[dict], numbers: list[int]) -> Chunk:
    def column(path: str) -> pa.Array:
        keys = compile_path(path)
        values = [get_path(doc, keys) for doc in docs]
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: as text, read like CSV
            return pa.array([v if v is None or type(v) is str else orjson.dumps(v).decode() for v in values],
                            pa.string())

    # rows are numbered by line, so a refused line between two good ones keeps the numbers right
    return Chunk(numbers[0] if numbers else 1, len(docs), column, lambda i: docs[i], numbers)
