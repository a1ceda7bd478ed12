"""`sitepulse import` throughput for CSV and Parquet against a bare binary COPY of the same rows, in the same run.

Starts its own PostgreSQL in a temporary directory, writes an export in the shape of docs/IMPORT.md's haul-truck
example (2 Hz, +00 times, WKT POINT Z, m/s, kg with -99, t/f booleans), and times, each ``--repeat`` times on an
emptied table (medians):

* bare COPY: the rows already converted (a RowBlock), only ``COPY telemetry FROM STDIN (FORMAT BINARY)``;
* import CSV and import Parquet: the whole importer (read, map, check, COPY, checkpoint), one process.

    .venv/bin/python benchmarks/import.py                    # 1M rows, 3 repeats
    .venv/bin/python benchmarks/import.py --rows 3000000 --repeat 5 --extra
    .venv/bin/python benchmarks/import.py --big-csv-gb 5      # the CLI on a 5 GB CSV: peak RSS and rows/s
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/decoders.py would shadow the decoders package: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import tomllib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from decoders.history.convert import ChunkConverter
from decoders.history.importer import Importer
from decoders.history.mapping import FileMapping
from decoders.history.sources import Source
from ingest.columns import concat
from ingest.partitions import Partitions
from ingest.writer import DIRECT_COPY_SQL
from sitepulse.db import connect
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade

MAPPING = """
machine = "column:device_id"
ts = "timestamp"
absent = [-99]
[fields]
speed_kmh = { path = "current_speed", unit = "m/s" }
payload_kg = { path = "load_weight", unit = "kg" }
engine_on = "engine_running"
[position]
path = "current_position"
format = "wkt"
"""
EXTRA = """
altitude = true
[[extra]]
path = "state"
[[extra]]
path = "is_autonomous"
type = "bool"
"""


def export_table(rows: int, trucks: int = 12, first: int = 0) -> pa.Table:
    """The haul-truck export's columns, as the telematics system writes them (text where it writes text)."""
    i = np.arange(first, first + rows)
    start = np.datetime64("2025-08-11T20:51:15.696619", "us")
    ts = start + (i // trucks) * np.timedelta64(500_000, "us")
    stamps = pc.strftime(pa.array(ts.astype("datetime64[s]"), pa.timestamp("s")), "%Y-%m-%d %H:%M:%S")
    micros = pc.cast(pa.array(ts.astype(np.int64) % 1_000_000), pa.string())
    stamps = pc.binary_join_element_wise(stamps, ".", pc.utf8_lpad(micros, 6, "0"), "+00", "")
    lon = pc.cast(pa.array(np.round(-97.8353 + (i % 5000) * 1e-5, 6)), pa.string())
    lat = pc.cast(pa.array(np.round(33.2692 + (i % 5000) * 1e-5, 6)), pa.string())
    point = pc.binary_join_element_wise("POINT Z (", lon, " ", lat, " 250.3)", "")
    loaded = (i // 400) % 2 == 1
    weight = np.where(i % 17 == 5, -99, np.where(loaded, 182000, 0))
    return pa.table({
        "timestamp": stamps,
        "device_id": pa.array([f"lake-605-8-{880 + t:04d}" for t in range(trucks)]).take(pa.array(i % trucks)),
        "current_position": point,
        "current_speed": pa.array(np.where(loaded, 4.2, 0.0)),
        "load_weight": pa.array(weight),
        "state": pa.array(np.where(loaded, "hauling", "loading")),
        "engine_running": pa.array(np.where(i % 50 == 0, "f", "t")),
        "is_autonomous": pa.array(np.where(i % 2 == 0, "t", "f")),
    })


def _empty(url: str) -> None:
    with connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE telemetry, ingest_rejects, import_files, machine_last")
        conn.execute("VACUUM ANALYZE telemetry")


def bare_copy(url: str, mapping: FileMapping, csv_path: Path) -> float:
    """Seconds for COPY alone of the same rows, converted beforehand and split into the importer's chunks."""
    source = Source.of(csv_path)
    converter = ChunkConverter(mapping, "bench", str(csv_path), csv_path.name)
    blocks = [converter.convert(chunk).block for chunk, _ in source.chunks(mapping)]
    payloads = [b.copy_bytes(jsonb_extra=True) for b in blocks]
    rows = sum(len(b) for b in blocks)
    assert rows == len(concat(blocks))
    with connect(url, autocommit=True) as conn:
        Partitions(enabled=True).ensure(conn, *concat(blocks[:1]).ts_range())
        started = time.perf_counter()
        for payload in payloads:
            with conn.transaction(), conn.cursor() as cur, cur.copy(DIRECT_COPY_SQL) as copy:
                copy.write(payload)
        return time.perf_counter() - started


def timed_import(url: str, mapping: FileMapping, path: Path) -> tuple[float, float, int]:
    """Wall seconds, this process's CPU seconds (every thread: the importer's own cost, the server's apart), rows."""
    started, cpu = time.perf_counter(), time.process_time()
    summary = Importer(url, "bench", mapping, "bench").run([Source.of(path)])
    return time.perf_counter() - started, time.process_time() - cpu, summary.stored


def big_csv(root: Path, gigabytes: float, text: str) -> int:
    """The whole CLI on a CSV of ``gigabytes`` written here: rows/s and the process's peak RSS (os.wait4)."""
    path, mapping_path = root / "big.csv", root / "mapping.toml"
    mapping_path.write_text(text)
    rows = 0
    with path.open("wb") as out:
        while out.tell() < gigabytes * 1e9:
            pa_csv.write_csv(export_table(500_000, first=rows), out, pa_csv.WriteOptions(
                include_header=rows == 0, quoting_style="needed"))
            rows += 500_000
    print(f"{path.stat().st_size / 1e9:.1f} GB CSV, {rows:,} rows")
    server = EmbeddedPostgres(root / "pg", fast_unsafe=True)
    server.start()
    try:
        url = server.fresh_database("bench_import_big")
        with connect(url, autocommit=True) as conn:
            upgrade(conn)
        env = {**os.environ, "SITEPULSE_DATABASE_URL": url}
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "sitepulse", "import", str(path), "--site", "bench",
                                    "--mapping", str(mapping_path)], env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        print(f"  exit {os.waitstatus_to_exitcode(status)}; {rows / seconds:,.0f} rows/s over {seconds:.0f} s;"
              f" peak RSS {usage.ru_maxrss / 1024:.0f} MB")
    finally:
        server.destroy()
        path.unlink()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--extra", action="store_true", help="also keep state, a boolean and the altitude in extra")
    parser.add_argument("--big-csv-gb", type=float, help="instead: the CLI on a CSV of this many GB (peak RSS)")
    args = parser.parse_args()
    text = MAPPING + (EXTRA if args.extra else "")
    mapping = FileMapping.model_validate(tomllib.loads(text))
    root = Path(tempfile.mkdtemp(prefix="sitepulse-bench-import-"))
    if args.big_csv_gb:
        return big_csv(root, args.big_csv_gb, text)
    table = export_table(args.rows)
    csv_path, parquet_path = root / "export.csv", root / "export.parquet"
    pa_csv.write_csv(table, csv_path, pa_csv.WriteOptions(quoting_style="needed"))
    typed = table.set_column(0, "timestamp", pc.cast(pc.utf8_slice_codeunits(table["timestamp"], 0, 26),
                                                     pa.timestamp("us")).cast(pa.timestamp("us", "UTC")))
    pq.write_table(typed, parquet_path, row_group_size=128_000)
    print(f"{args.rows:,} rows of the haul-truck export: CSV {csv_path.stat().st_size / 1e6:.0f} MB, Parquet "
          f"{parquet_path.stat().st_size / 1e6:.0f} MB; extra {'on' if args.extra else 'off'}; {args.repeat} repeats")
    server = EmbeddedPostgres(root / "pg", fast_unsafe=True)
    server.start()
    try:
        url = server.fresh_database("bench_import")
        with connect(url, autocommit=True) as conn:
            upgrade(conn)
        times: dict[str, list[float]] = {"bare COPY": [], "import CSV": [], "import Parquet": []}
        cpu: dict[str, list[float]] = {"import CSV": [], "import Parquet": []}
        for _ in range(args.repeat):
            _empty(url)
            times["bare COPY"].append(bare_copy(url, mapping, csv_path))
            for name, path in (("import CSV", csv_path), ("import Parquet", parquet_path)):
                _empty(url)
                seconds, cpu_seconds, stored = timed_import(url, mapping, path)
                assert stored == args.rows, (name, stored)
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
        base = args.rows / statistics.median(times["bare COPY"])
        for name, values in times.items():
            rate = args.rows / statistics.median(values)
            print(f"  {name:15s} {rate:>10,.0f} rows/s  ({rate / base:.2f}x bare COPY; runs "
                  + ", ".join(f"{v:.2f}" for v in values) + " s)")
        for name, values in cpu.items():
            print(f"  {name:15s} {args.rows / statistics.median(values):>10,.0f} rows per CPU-second of the importer"
                  " process (its one core's ceiling; PostgreSQL's work is in the server)")
    finally:
        server.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
