"""``/metrics`` for Prometheus (API requests, ingest workers' counters, each service's lag) and decoder counts.

It needs an admin token (Prometheus: ``authorization: {credentials: <token>}`` in the scrape
config), since counters per site and route describe customers' activity.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from microservices.pairs import prometheus_lines
from registry.api.deps import AdminDep, DbDep, StateDep
from registry.api.metrics import label_value
from sitepulse.status import add_decoder_counts

router = APIRouter(tags=["operations"])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _ingest_metrics(conn: psycopg.Connection) -> str:
    try:
        from ingest.metrics import render_prometheus
    except ImportError:  # an installation without ingest
        return ""
    try:
        with conn.transaction():
            return render_prometheus(conn)
    except psycopg.errors.UndefinedTable:  # ingest's migrations not applied to this database
        return ""


def _runner_metrics(conn: psycopg.Connection) -> str:
    lines = [
        "# HELP sitepulse_service_lag_seconds Age of the newest telemetry a service has processed, per site",
        "# TYPE sitepulse_service_lag_seconds gauge",
    ]
    for service, site_id, lag in conn.execute(
        "SELECT service, site_id, extract(epoch FROM now() - data_until) FROM service_checkpoints"
        " WHERE data_until IS NOT NULL ORDER BY service, site_id"
    ):
        labels = f'service="{label_value(service)}",site="{label_value(site_id)}"'
        lines.append(f"sitepulse_service_lag_seconds{{{labels}}} {float(lag):.3f}")
    lines += [
        "# HELP sitepulse_service_failures Consecutive failures of a service in the runner",
        "# TYPE sitepulse_service_failures gauge",
    ]
    for service, failures in conn.execute("SELECT service, failures FROM service_health ORDER BY service"):
        lines.append(f'sitepulse_service_failures{{service="{label_value(service)}"}} {failures}')
    lines += prometheus_lines(conn, label_value)
    return "\n".join(lines) + "\n"


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(conn: DbDep, state: StateDep, admin: AdminDep) -> PlainTextResponse:
    """Prometheus text exposition (admin token)."""
    body = state.metrics.render() + _runner_metrics(conn) + _ingest_metrics(conn)
    return PlainTextResponse(body, media_type=PROMETHEUS_TEXT)


@router.get("/api/v1/ingest/decoders")
def decoder_counts(conn: DbDep, admin: AdminDep) -> dict[str, list[dict[str, Any]]]:
    """Messages and rejects by reason class per decoder, summed over every ingest worker (decoders/README.md)."""
    totals: dict[str, dict[str, Any]] = {}
    for (counters,) in conn.execute("SELECT counters FROM ingest_worker_stats ORDER BY worker_id"):
        add_decoder_counts(totals, counters if isinstance(counters, dict) else orjson.loads(counters))
    return {"items": [{"decoder": name, "messages": entry["messages"], "rejected": sum(entry["rejects"].values()),
                       "rejects": entry["rejects"]} for name, entry in sorted(totals.items())]}
