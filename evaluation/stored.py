"""The real pieces under a service, for tests: telemetry stored as ingest's writer stores it, the runner caught
up over it, and every page of a route read back through the API."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import psycopg

from ingest.contract import ROW_COLUMNS
from ingest.partitions import Partitions
from ingest.reader import Watermark
from ingest.writer import LAST_SQL, last_value_params
from microservices.runner import ServiceHost


def insert_telemetry(conn: psycopg.Connection, rows: pd.DataFrame) -> int:
    """Store telemetry rows (ingest's columns) in one transaction as the writer does: duplicates stored once,
    the machines' last values (``machine_last``) kept up to date."""
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


def catch_up_fully(conn: psycopg.Connection, host: ServiceHost, site_ids: list[str], timeout: float = 30) -> int:
    """Run ``host`` until its checkpoint covers every stored row of these sites; returns rows processed.

    ``catch_up`` alone may stop early while any transaction in the cluster (even autovacuum's
    ANALYZE) holds the snapshot xmin back: rows are then read on the next wake, never lost, but a
    test must wait for them.
    """
    deadline = time.monotonic() + timeout
    total = 0
    for site_id in site_ids:
        newest = conn.execute("SELECT max(xid::text::bigint) FROM telemetry WHERE site_id = %s",
                              (site_id,)).fetchone()[0]
        while True:
            total += host.catch_up(conn, [site_id])
            mark = conn.execute("SELECT watermark FROM service_checkpoints WHERE service = %s AND site_id = %s",
                                (host.service.name, site_id)).fetchone()
            if newest is None or (mark and mark[0] and Watermark.from_json(mark[0]).xmin > newest):
                break
            if time.monotonic() > deadline:
                holders = conn.execute("SELECT pid, backend_type, state, query FROM pg_stat_activity"
                                       " WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL").fetchall()
                raise AssertionError(f"{host.service.name}/{site_id} did not catch up in {timeout} s; "
                                     f"transactions holding the snapshot back: {holders}")
            time.sleep(0.02)
    return total


def all_pages(client: Any, path: str, headers: dict[str, str], **params: Any) -> list[dict]:
    """Every item of a paginated route, following ``next_cursor`` (each page must answer 200)."""
    items, cursor = [], None
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
