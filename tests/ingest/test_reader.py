"""read_new_telemetry: every committed row exactly once, with concurrent writers and late samples."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

from ingest.contract import Decoded, Decoder
from ingest.partitions import Partitions
from ingest.reader import Watermark, current_watermark, new_rows_query, read_new_telemetry, read_telemetry_range
from ingest.writer import TelemetryWriter

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


def _insert(conn: psycopg.Connection, rows: list[tuple[str, str, datetime, int]], hold_s: float) -> None:
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO telemetry (site_id, machine_id, ts, seq) VALUES (%s, %s, %s, %s)", rows)
        time.sleep(hold_s)  # keep the transaction open while others commit


def test_concurrent_writers_and_late_rows_are_read_exactly_once(fresh_database_url: str) -> None:
    url = fresh_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        Partitions(enabled=True).ensure(conn, BASE - timedelta(days=40), BASE + timedelta(days=4))
    expected: set[tuple] = set()
    lock = threading.Lock()
    done = threading.Event()

    def writer(index: int) -> None:
        rng = random.Random(index)
        with psycopg.connect(url, autocommit=True) as conn:
            for batch in range(25):
                late = rng.random() < 0.3  # a device flushing a buffer from hours (or a month) ago
                start = BASE - timedelta(hours=rng.choice([5, 30 * 24])) if late else BASE
                rows = [
                    (f"s{index % 2}", f"m{index}", start + timedelta(seconds=batch * 100 + k), batch * 100 + k)
                    for k in range(rng.randint(1, 40))
                ]
                _insert(conn, rows, rng.random() * 0.03)
                with lock:
                    expected.update((s, m, ts, q) for s, m, ts, q in rows)

    seen: list[tuple] = []

    def reader() -> None:
        mark: Watermark | None = None
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                finished = done.is_set()
                frame, mark = read_new_telemetry(conn, after=mark, limit=37)
                seen.extend(
                    zip(frame.site_id, frame.machine_id, (t.to_pydatetime() for t in frame.ts), frame.seq, strict=True)
                )
                mark = Watermark.from_json(mark.to_json())  # checkpoints survive serialisation
                if finished and frame.empty:
                    return
                time.sleep(0.002)

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    read_thread = threading.Thread(target=reader)
    read_thread.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    done.set()
    read_thread.join(60)
    assert not read_thread.is_alive()
    assert len(seen) == len(set(seen)), "a row was read twice"
    assert set(seen) == expected, f"missing {len(expected - set(seen))}"


def test_watermark_pages_sorting_and_range_reads(fresh_database_url: str) -> None:
    writer = TelemetryWriter(fresh_database_url)
    writer.open()
    decoder = Decoder()
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        start = current_watermark(conn)
        for machine in ("b", "a"):
            batch = Decoded()
            for i in range(30):
                payload = f'{{"ts": {BASE.timestamp() + 30 - i}, "seq": {i}, "lat": 1.5, "x": {i}}}'.encode()
                decoder.decode_into(batch, f"sites/r1/machines/{machine}/telemetry", payload, datetime.now(UTC))
            writer.write(batch)
        pages = []
        mark = start
        while True:
            frame, mark = read_new_telemetry(conn, after=mark, limit=25, site_id="r1")
            if frame.empty:
                break
            pages.append(frame)
        assert [len(p) for p in pages] == [25, 25, 10]
        first = pages[0]
        assert list(first.columns[:4]) == ["site_id", "machine_id", "ts", "seq"]
        assert str(first.ts.dtype) == "datetime64[ns, UTC]" or str(first.ts.dtype).endswith(", UTC]")
        assert first.ts.is_monotonic_increasing and first.extra.iloc[0] == {"x": 29}
        everything, _ = read_new_telemetry(conn, after=None)
        assert len(everything) == 60
        assert list(everything.machine_id[:30]) == ["a"] * 30  # sorted by machine, ts
        window = read_telemetry_range(
            conn, "r1", BASE + timedelta(seconds=1), BASE + timedelta(seconds=11), machine_ids=["a"]
        )
        assert len(window) == 10 and set(window.machine_id) == {"a"}
        rollup = conn.execute("SELECT sum(samples) FROM telemetry_1m WHERE site_id = 'r1'").fetchone()[0]
        assert rollup == 60
    writer.close()


def test_rows_read_in_binary_are_the_values_stored(fresh_database_url: str) -> None:
    """The reader takes timestamps as integers and converts whole columns: the frame must equal one built from the
    server's own values (microseconds, NULLs of every type, jsonb, booleans) and page like before."""
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        Partitions(enabled=True).ensure(conn, BASE - timedelta(days=1), BASE + timedelta(days=1))
        conn.execute(
            "INSERT INTO telemetry (site_id, machine_id, ts, seq, lat, lon, speed_kmh, engine_on, extra, payload_kg)"
            " VALUES ('s', 'a', %(t)s + interval '0.123456 s', 1, 59.1, 18.2, NULL, NULL, '{\"k\": [1, \"x\"]}', NULL),"
            " ('s', 'a', %(t)s + interval '1 s', 2, NULL, NULL, 12.5, true, NULL, -99),"
            " ('s', 'b', %(t)s - interval '0.000001 s', -1, 59.0, 18.0, 0.0, false, '{}', 100)", {"t": BASE})
        frame, mark = read_new_telemetry(conn, after=None, site_id="s", limit=2)
        rest, _ = read_new_telemetry(conn, after=Watermark.from_json(mark.to_json()), site_id="s", limit=2)
        stored = conn.execute("SELECT machine_id, ts, payload_kg FROM telemetry ORDER BY machine_id, ts").fetchall()
    both = pd.concat([frame, rest], ignore_index=True).sort_values(["machine_id", "ts"], ignore_index=True)
    assert str(both["ts"].dtype) == "datetime64[ns, UTC]"
    assert [(m, t.to_pydatetime()) for m, t in zip(both["machine_id"], both["ts"], strict=True)] == \
        [(m, t) for m, t, _ in stored]
    assert both["ts"].iloc[0] == pd.Timestamp(BASE) + pd.Timedelta(microseconds=123456)
    assert both["ts"].iloc[2] == pd.Timestamp(BASE) - pd.Timedelta(microseconds=1)
    assert both["lat"].isna().tolist() == [False, True, False]
    assert both["speed_kmh"].isna().tolist() == [True, False, False]
    assert both["engine_on"].tolist() == [None, True, False]
    assert both["extra"].tolist() == [{"k": [1, "x"]}, None, {}]
    assert both["payload_kg"].tolist()[1:] == [-99.0, 100.0] and np.isnan(both["payload_kg"].iloc[0])
    assert len(frame) == 2 and len(rest) == 1  # paged on the key, the binary timestamp taken back into it


def _plan_nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


def test_a_sites_read_visits_only_that_sites_rows(fresh_database_url: str) -> None:
    """A runner reads one site at a time: the read must go to that site's rows through the (site_id, xid) index,
    not walk every site's rows of the xid range and filter (its cost then grew with the number of sites)."""
    per_site = 3000
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        Partitions(enabled=True).ensure(conn, BASE - timedelta(days=1), BASE + timedelta(days=1))
        for site in ("s0", "s1", "s2", "s3"):  # one transaction each: a backlog after an outage
            conn.execute(
                "INSERT INTO telemetry (site_id, machine_id, ts, seq) SELECT %s, 'M' || (i %% 10),"
                " %s + make_interval(secs => i / 10), i FROM generate_series(1, %s) i", (site, BASE, per_site))
        conn.execute("ANALYZE telemetry")
        middle = current_watermark(conn)
        conn.execute("INSERT INTO telemetry (site_id, machine_id, ts, seq) VALUES ('s1', 'late', %s, 1),"
                     " ('s2', 'late', %s, 1)", (BASE, BASE))
        for after, expected, by_key in ((None, per_site + 1, False), (None, per_site + 1, True), (middle, 1, False)):
            sql, params = new_rows_query(after, "s1", limit=200_000, by_key=by_key)
            plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()[0][0]["Plan"]
            scans = [n for n in _plan_nodes(plan) if n.get("Relation Name", "").startswith("telemetry")]
            assert sum(n["Actual Rows"] for n in scans) == expected
            assert all(n.get("Rows Removed by Filter", 0) == 0 for n in _plan_nodes(plan)), plan

    assert "Sort" not in str(plan) or by_key  # in xid order the index needs no sort


def test_pages_end_with_whole_transactions_and_one_larger_than_a_page_is_paged_on_the_key(
        fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        Partitions(enabled=True).ensure(conn, BASE - timedelta(days=1), BASE + timedelta(days=1))
        for first, size in ((0, 30), (30, 30), (60, 120), (180, 10)):  # four transactions, one over a page
            conn.execute("INSERT INTO telemetry (site_id, machine_id, ts, seq) SELECT 's', 'M' || (i %% 3),"
                         " %s + make_interval(secs => i), i FROM generate_series(%s::int, %s::int) i",
                         (BASE, first, first + size - 1))
        pages, mark, seen = [], None, []
        while True:
            frame, mark = read_new_telemetry(conn, after=mark, site_id="s", limit=50)
            if frame.empty:
                break
            pages.append(len(frame))
            seen.extend(frame["seq"])
    assert sorted(seen) == list(range(190))  # every row once
    # two pages of one transaction whole each, then the 120-row one paged on the key (the last page of it
    # continues on the key and takes the 10-row transaction with it)
    assert pages == [30, 30, 50, 50, 30]
