"""``/metrics`` for Prometheus (API requests, ingest workers' counters, each service's lag) and decoder counts.

It needs an admin token (Prometheus: ``authorization: {credentials: <token>}`` in the scrape
config), since counters per site and route describe customers' activity.
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from ingest.metrics import add_decoder_counts, worker_reports
from microservices.pairs import prometheus_lines
from microservices.progress import runner_health, service_progress
from registry.api.deps import AdminDep, DbDep, StateDep
from registry.api.metrics import label_value

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
    for progress in service_progress(conn):
        if progress.lag_s is not None:
            labels = f'service="{label_value(progress.service)}",site="{label_value(progress.site_id)}"'
            lines.append(f"sitepulse_service_lag_seconds{{{labels}}} {progress.lag_s:.3f}")
    lines += [
        "# HELP sitepulse_service_failures Consecutive failures of a service in the runner",
        "# TYPE sitepulse_service_failures gauge",
    ]
    for service, health in sorted(runner_health(conn).items()):
        lines.append(f'sitepulse_service_failures{{service="{label_value(service)}"}} {health["failures"]}')
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
    for *_, counters in worker_reports(conn):
        add_decoder_counts(totals, counters)
    return {"items": [{"decoder": name, "messages": entry["messages"], "rejected": sum(entry["rejects"].values()),
                       "rejects": entry["rejects"]} for name, entry in sorted(totals.items())]}
