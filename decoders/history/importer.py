"""Import recorded files into telemetry: read, convert, check, and write by binary COPY, resumable.

Each chunk is written by ingest's own writer (``ingest.writer.TelemetryWriter``: binary COPY, ``ON CONFLICT DO
NOTHING`` on the telemetry key, rejects with their digest), in its own transaction, so imported rows reach the
service runner exactly like late data from MQTT: the runner reads rows by the transaction that committed them, not
by their time. After each commit the file's row count is saved in ``import_files``; a run that stops resumes
there, and a file imported once is skipped (``again`` reads it once more: every row a duplicate, none stored).
The writer works in its own thread while the next chunk is read and converted.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from decoders.history.convert import Chunk, ChunkConverter, Converted, reason_class
from decoders.history.mapping import FileMapping
from decoders.history.sources import Problem, Source
from ingest.columns import RowBlock, empty_block
from ingest.contract import Birth, Reject, Status
from ingest.writer import TelemetryWriter, last_value_params
from sitepulse.errors import InvalidInput

_EDGE_BYTES = 1 << 20
CHECKPOINT_SQL = (
    "INSERT INTO import_files AS f (site_id, file_key, path, rows_done, stored, duplicates, rejected)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site_id, file_key) DO UPDATE SET path = EXCLUDED.path,"
    " rows_done = EXCLUDED.rows_done, stored = f.stored + EXCLUDED.stored,"
    " duplicates = f.duplicates + EXCLUDED.duplicates, rejected = f.rejected + EXCLUDED.rejected, updated_at = now()"
)


@dataclass
class ImportBatch:
    """One chunk's rows and rejects in the shape ``TelemetryWriter.write`` takes (no births or statuses)."""

    rows: RowBlock
    rejects: list[Reject]
    site_id: str
    births: list[Birth] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)

    def block(self) -> RowBlock:
        return self.rows

    @property
    def sites(self) -> set[str]:
        return {self.site_id}


@dataclass
class Summary:
    """What an import did, over all its files (this run only)."""

    files: int = 0
    skipped_files: list[str] = field(default_factory=list)  # imported before with this mapping
    resumed: dict[str, int] = field(default_factory=dict)  # file -> row it resumed after
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason class -> rejects


def file_key(path: Path, mapping_digest: str) -> str:
    """Identity of a file's content with a mapping: size, first and last MiB (hashing 5 GB would cost a pass)."""
    digest = hashlib.sha256(mapping_digest.encode())
    size = path.stat().st_size
    digest.update(size.to_bytes(8, "big"))
    with open(path, "rb") as stream:
        digest.update(stream.read(_EDGE_BYTES))
        if size > 2 * _EDGE_BYTES:
            stream.seek(size - _EDGE_BYTES)
            digest.update(stream.read(_EDGE_BYTES))
    return digest.hexdigest()[:32]


class Importer:
    """Imports files for one site with one mapping through one database connection."""

    def __init__(self, database_url: str, site_id: str, mapping: FileMapping, mapping_digest: str) -> None:
        self.database_url = database_url
        self.site_id = site_id
        self.mapping = mapping
        self.mapping_digest = mapping_digest
        self.summary = Summary()

    def run(self, sources: list[Source], again: bool = False, on_rows: Callable[[int], None] | None = None) -> Summary:
        """Import each source in turn; ``on_rows(n)`` after each chunk is written (progress)."""
        with TelemetryWriter(self.database_url) as writer:
            for source in sources:
                self._file(writer, source, again, on_rows or (lambda n: None))
        return self.summary

    def _file(self, writer: TelemetryWriter, source: Source, again: bool, on_rows: Callable[[int], None]) -> None:
        conn = writer.conn
        assert conn is not None
        key = file_key(source.path, self.mapping_digest)
        found = conn.execute("SELECT rows_done, completed_at IS NOT NULL FROM import_files"
                             " WHERE site_id = %s AND file_key = %s", (self.site_id, key)).fetchone()
        self.summary.files += 1
        label = str(source.path)
        skip = 0
        if found is not None and not again:
            if found[1]:
                self.summary.skipped_files.append(label)
                source._fraction = 1.0
                return
            skip = int(found[0])
            if skip:
                self.summary.resumed[label] = skip
        if again:
            conn.execute("UPDATE import_files SET completed_at = NULL, rows_done = 0"
                         " WHERE site_id = %s AND file_key = %s", (self.site_id, key))
        converter = ChunkConverter(self.mapping, self.site_id, label, source.path.name)
        pending: queue.Queue = queue.Queue(maxsize=1)
        failure: list[BaseException] = []

        def write_chunks() -> None:
            try:
                while (item := pending.get()) is not None:
                    batch, rows_done = item
                    result = writer.write(batch, direct_extra=True)  # type: ignore[arg-type]
                    conn.execute(CHECKPOINT_SQL, (self.site_id, key, label, rows_done, result.stored,
                                                  result.duplicates, result.rejected))
                    self.summary.stored += result.stored
                    self.summary.duplicates += result.duplicates
                    self.summary.rejected.update(r.code or reason_class(r.reason) for r in batch.rejects)
                    on_rows(len(batch.rows) + len(batch.rejects))
            except BaseException as exc:  # handed to the reading thread, which raises it
                failure.append(exc)
                while pending.get() is not None:
                    pass

        thread = threading.Thread(target=write_chunks, name="import-writer", daemon=True)
        thread.start()
        rows_done = skip
        try:
            for chunk, problems in _readable(source, source.chunks(self.mapping, skip)):
                if failure:
                    break
                converted = converter.convert(chunk) if chunk.length else Converted(empty_block())
                rejects = [self._refused(converter, p) for p in problems] + converted.rejects
                batch = ImportBatch(converted.block, rejects, self.site_id)
                if len(batch.rows):  # built here while the writer thread waits on the server (as ingest.writer.prepare)
                    batch.rows.ts_range()
                    batch.rows.copy_bytes(jsonb_extra=True)
                    batch.rows.cache["last_values"] = last_value_params(batch.rows)
                rows_done += chunk.length
                self.summary.read += chunk.length + len(problems)
                pending.put((batch, rows_done))
        finally:
            pending.put(None)
            thread.join()
        if failure:
            raise failure[0]
        conn.execute(CHECKPOINT_SQL, (self.site_id, key, label, rows_done, 0, 0, 0))  # also for an empty file
        conn.execute("UPDATE import_files SET completed_at = now() WHERE site_id = %s AND file_key = %s",
                     (self.site_id, key))

    def _refused(self, converter: ChunkConverter, problem: Problem) -> Reject:
        reason = f"{problem.where} {problem.row}: {problem.reason}"
        return Reject(converter.received_at, converter.topic, problem.text.encode(), reason, self.site_id, None,
                      reason_class(problem.reason))


def _readable(source: Source, chunks: Iterator[tuple[Chunk, list[Problem]]]) -> Iterator[tuple[Chunk, list[Problem]]]:
    """The chunks; a file that cannot be read on (bad gzip, not UTF-8, a broken Parquet page) is one line."""
    try:
        yield from chunks
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"{source.path}: cannot read on ({message[:300]}); the rows before are stored, and"
                           " the same command resumes after them once the file is fixed") from None
