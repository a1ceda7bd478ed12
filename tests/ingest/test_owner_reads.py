"""What other packages read of ingest's tables, through ingest's functions (tests/test_architecture.py refuses
their own SQL on them): the fleet with births and last values, newest arrival and commit mark, worker reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from ingest.fleet import births, fleet_page, fleet_size
from ingest.metrics import add_decoder_counts, worker_reports
from ingest.reader import machines_with_telemetry, newest_arrival, newest_xid
from ingest.writer import insert_telemetry


def test_the_fleet_the_newest_rows_and_the_worker_reports(fresh_database_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        assert newest_arrival(conn) == (None, None) and newest_xid(conn, "a") is None
        conn.execute("INSERT INTO machines (site_id, machine_id, kind, model, rated_payload_kg) VALUES"
                     " ('a', 'H1', 'hauler', 'CAT 775', 64000), ('a', 'L1', 'loader', '', NULL),"
                     " ('b', 'H9', 'hauler', '', NULL)")
        insert_telemetry(conn, pd.DataFrame({
            "site_id": ["a", "a", "c"], "machine_id": ["H1", "X2", "Z1"], "ts": [now - timedelta(minutes=1)] * 3,
            "seq": [1, 1, 1], "lat": [60.0, None, 1.0], "lon": [10.0, None, 1.0], "engine_hours": [812.5, 3.0, 1.0]}))
        page = fleet_page(conn, ["a"], limit=10, offset=0)
        assert [(r["site_id"], r["machine_id"], r["kind"]) for r in page] == [
            ("a", "H1", "hauler"), ("a", "L1", "loader"), ("a", "X2", None)]  # born, born, only seen
        assert page[0]["engine_hours"] == 812.5 and page[1]["ts"] is None
        assert fleet_size(conn, ["a"]) == 3 and fleet_size(conn, None) == 5
        assert [r["machine_id"] for r in fleet_page(conn, None, limit=2, offset=3)] == ["H9", "Z1"]
        assert [r["machine_id"] for r in fleet_page(conn, None, 10, 0, one=("a", "X2"))] == ["X2"]
        assert births(conn, "a") == [("H1", "hauler", "CAT 775", 64000.0), ("L1", "loader", "", None)]
        assert machines_with_telemetry(conn, "a") == {"H1", "X2"}
        arrived, age = newest_arrival(conn)
        assert arrived is not None and 0 <= age < 60 and newest_xid(conn, "a") > 0
        conn.execute("INSERT INTO ingest_worker_stats (worker_id, host, pid, started_at, counters)"
                     " VALUES ('w1', 'h', 7, now(), %s)",
                     (Jsonb({"received_messages": 3, "decoder_messages": {"sparkplug": 2},
                             "decoder_rejects": {"sparkplug": {"alias": 1}}}),))
        [(worker, host, pid, _at, age, counters)] = worker_reports(conn)
        assert (worker, host, pid, counters["received_messages"]) == ("w1", "h", 7, 3) and age < 60
        totals: dict = {}
        add_decoder_counts(totals, counters)
        assert totals == {"sparkplug": {"messages": 2, "rejects": {"alias": 1}}}
