"""The real pieces under a service, for tests: telemetry stored as ingest's writer stores it, the runner caught
up over it, and every page of a route read back through the API."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from ingest.reader import newest_xid
from ingest.writer import insert_telemetry  # noqa: F401 (the harness's name for it)
from microservices.progress import read_watermark
from microservices.runner import ServiceHost


def catch_up_fully(conn: psycopg.Connection, host: ServiceHost, site_ids: list[str], timeout: float = 30) -> int:
    """Run ``host`` until its checkpoint covers every stored row of these sites; returns rows processed.

    ``catch_up`` alone may stop early while any transaction in the cluster (even autovacuum's
    ANALYZE) holds the snapshot xmin back: rows are then read on the next wake, never lost, but a
    test must wait for them.
    """
    deadline = time.monotonic() + timeout
    total = 0
    for site_id in site_ids:
        newest = newest_xid(conn, site_id)
        while True:
            total += host.catch_up(conn, [site_id])
            mark = read_watermark(conn, host.service.name, site_id)
            if newest is None or (mark is not None and mark.xmin > newest):
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
