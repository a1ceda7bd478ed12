"""How far each service got, for readers outside the runner (``sitepulse status``, test harnesses): the runner's
``service_checkpoints`` and ``service_health`` read through these, never with another package's SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ingest.reader import Watermark


@dataclass(frozen=True)
class Progress:
    """One service on one site: data processed up to ``data_until`` (``lag_s`` ago), and the service's health."""

    service: str
    site_id: str
    data_until: datetime | None
    lag_s: float | None
    rows_processed: int
    replays: int
    updated_at: datetime
    health: str
    failures: int
    last_error: str | None


def service_progress(conn: psycopg.Connection) -> list[Progress]:
    """Every (service, site) checkpoint with that site's health (``service_pairs``), else its service's ('unknown'
    before the first report)."""
    rows = conn.execute(
        "SELECT c.service, c.site_id, c.data_until, extract(epoch FROM now() - c.data_until)::float8,"
        " c.rows_processed, c.replays, c.updated_at, coalesce(p.status, h.status, 'unknown'),"
        " coalesce(p.failures, h.failures, 0), coalesce(p.last_error, h.last_error) FROM service_checkpoints c"
        " LEFT JOIN service_health h ON h.service = c.service"
        " LEFT JOIN service_pairs p ON p.service = c.service AND p.site_id = c.site_id"
        " ORDER BY c.service, c.site_id").fetchall()
    return [Progress(s, site, until, None if lag is None else float(lag), int(n), int(replays), at, health,
                     int(failures), error) for s, site, until, lag, n, replays, at, health, failures, error in rows]


def read_watermark(conn: psycopg.Connection, service: str, site_id: str) -> Watermark | None:
    """Where a service's reading of a site's telemetry stands (None before its first step there)."""
    row = conn.execute("SELECT watermark FROM service_checkpoints WHERE service = %s AND site_id = %s",
                       (service, site_id)).fetchone()
    return Watermark.from_json(row[0]) if row and row[0] else None


def runner_health(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Each service's health as the runner last recorded it (status, failures, last error and success), by name."""
    rows = conn.execute("SELECT service, status, failures, last_error, last_error_at, last_success_at,"
                        " updated_at FROM service_health")
    keys = ("status", "failures", "last_error", "last_error_at", "last_success_at", "updated_at")
    return {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}
