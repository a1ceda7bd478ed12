"""Ingest counters: kept in-process, upserted per worker into the database, rendered for Prometheus.

The API is a different process from the workers, so each worker saves its counters to
``ingest_worker_stats`` every few seconds and :func:`render_prometheus` reads that table.

Kept hand-written rather than prometheus-client (which the API's own request metrics use): its multi-process mode
shares counters through files in one directory on one host, while ingest workers run as separate containers or
hosts, and the same table feeds ``sitepulse status`` and the decoder counts; the rendering here is 30 lines.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

STALE_AFTER_S = 60  # a worker that has not reported for this long is shown as down

# counter name -> (prometheus type, help)
METRICS: dict[str, tuple[str, str]] = {
    "received_messages": ("counter", "MQTT messages received"),
    "received_samples": ("counter", "Samples decoded from received messages (valid or not)"),
    "stored_rows": ("counter", "Telemetry rows newly stored"),
    "duplicate_rows": ("counter", "Valid rows already stored (re-delivery or duplicate), skipped"),
    "rejected": ("counter", "Messages or samples written to ingest_rejects"),
    "batches": ("counter", "Committed batches"),
    "acked_messages": ("counter", "Messages acknowledged to the broker after commit"),
    "other_partition_messages": ("counter", "Messages of machines another partitioned worker owns, acked unread"),
    "db_errors": ("counter", "Failed commit attempts (database unreachable), retried"),
    "commit_seconds_sum": ("counter", "Total time spent committing batches"),
    "commit_seconds_max": ("gauge", "Longest batch commit since the worker started"),
    "last_commit_seconds": ("gauge", "Duration of the last batch commit"),
    "lag_seconds": ("gauge", "Arrival-to-commit time of the oldest message in the last batch"),
    "queue_depth": ("gauge", "Messages received and not yet committed"),
    "mqtt_reconnects": ("counter", "MQTT reconnections"),
}


@dataclass
class IngestCounters:
    """One worker's counters (monotonic unless marked gauge in METRICS)."""

    received_messages: int = 0
    received_samples: int = 0
    stored_rows: int = 0
    duplicate_rows: int = 0
    rejected: int = 0
    batches: int = 0
    acked_messages: int = 0
    other_partition_messages: int = 0
    db_errors: int = 0
    commit_seconds_sum: float = 0.0
    commit_seconds_max: float = 0.0
    last_commit_seconds: float = 0.0
    lag_seconds: float = 0.0
    queue_depth: int = 0
    mqtt_reconnects: int = 0
    # per decoder (decoders/): messages routed to it, and its rejects by reason class
    decoder_messages: dict[str, int] = field(default_factory=dict)
    decoder_rejects: dict[str, dict[str, int]] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("started_at")
        if not self.decoder_messages:
            del values["decoder_messages"], values["decoder_rejects"]
        return values

    def summary(self) -> str:
        """The one line a worker logs periodically."""
        mean = self.commit_seconds_sum / self.batches if self.batches else 0.0
        return (
            f"received={self.received_messages} msgs stored={self.stored_rows} rows "
            f"duplicates={self.duplicate_rows} rejected={self.rejected} batches={self.batches} "
            f"commit_mean={mean * 1000:.1f}ms commit_max={self.commit_seconds_max * 1000:.1f}ms "
            f"lag={self.lag_seconds:.2f}s queue={self.queue_depth} db_errors={self.db_errors}"
        )


def worker_identity(index: int) -> str:
    """A worker id unique across hosts and restarts' processes."""
    return f"{socket.gethostname()}:{os.getpid()}:{index}"


def save_counters(conn: psycopg.Connection, worker_id: str, counters: IngestCounters) -> None:
    """Upsert this worker's counters so another process can render them."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO ingest_worker_stats (worker_id, host, pid, started_at, updated_at, counters)"
            " VALUES (%s, %s, %s, %s, now(), %s) ON CONFLICT (worker_id) DO UPDATE"
            " SET updated_at = now(), counters = EXCLUDED.counters",
            (worker_id, socket.gethostname(), os.getpid(), counters.started_at, Jsonb(counters.as_dict())),
        )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def worker_reports(conn: psycopg.Connection) -> list[tuple[str, str, int, datetime, float, dict[str, Any]]]:
    """Each worker's last report: (worker_id, host, pid, updated_at, seconds since, counters), by worker id; what
    other packages read of ``ingest_worker_stats`` (``sitepulse status``, the API's /metrics)."""
    rows = conn.execute(
        "SELECT worker_id, host, pid, updated_at, extract(epoch FROM now() - updated_at)::float8, counters"
        " FROM ingest_worker_stats ORDER BY worker_id"
    ).fetchall()
    return [(w, h, p, at, float(age), c if isinstance(c, dict) else orjson.loads(c)) for w, h, p, at, age, c in rows]


def add_decoder_counts(totals: dict[str, dict[str, Any]], counters: dict[str, Any]) -> None:
    """Add one worker's per-decoder counters to ``totals`` ({decoder: {"messages": n, "rejects": {reason: n}}})."""
    for decoder, count in counters.get("decoder_messages", {}).items():
        entry = totals.setdefault(decoder, {"messages": 0, "rejects": {}})
        entry["messages"] += int(count)
        for code, n in counters.get("decoder_rejects", {}).get(decoder, {}).items():
            entry["rejects"][code] = entry["rejects"].get(code, 0) + int(n)


def render_prometheus(conn: psycopg.Connection) -> str:
    """Prometheus text exposition of every worker's last reported counters (sitepulse_ingest_*)."""
    rows = [(w, h, p, age, c) for w, h, p, _at, age, c in worker_reports(conn)]
    lines: list[str] = [
        "# HELP sitepulse_ingest_worker_up 1 if the worker reported within the last minute",
        "# TYPE sitepulse_ingest_worker_up gauge",
    ]
    for worker_id, _host, _pid, age, _counters in rows:
        lines.append(
            f'sitepulse_ingest_worker_up{{worker="{_label(worker_id)}"}} '
            f"{1 if float(age) < STALE_AFTER_S else 0}"
        )
    for name, (kind, text) in METRICS.items():
        metric = f"sitepulse_ingest_{name.removesuffix('_sum')}" + ("_total" if kind == "counter" else "")
        lines.append(f"# HELP {metric} {text}")
        lines.append(f"# TYPE {metric} {kind}")
        for worker_id, _host, _pid, _age, counters in rows:
            value = counters.get(name, 0)
            lines.append(
                f'{metric}{{worker="{_label(worker_id)}"}} {float(value):.6g}'
                if isinstance(value, float)
                else f'{metric}{{worker="{_label(worker_id)}"}} {value}'
            )
    lines += _decoder_lines(rows)
    return "\n".join(lines) + "\n"


def _decoder_lines(rows: list[tuple]) -> list[str]:
    """Per decoder and per reject reason class, for workers that run decoders (decoders/README.md)."""
    messages = [(w, d, n) for w, _h, _p, _a, c in rows for d, n in sorted(c.get("decoder_messages", {}).items())]
    rejects = [
        (w, d, code, n)
        for w, _h, _p, _a, c in rows
        for d, codes in sorted(c.get("decoder_rejects", {}).items())
        for code, n in sorted(codes.items())
    ]
    if not messages:
        return []
    lines = [
        "# HELP sitepulse_ingest_decoder_messages_total Messages routed to each decoder",
        "# TYPE sitepulse_ingest_decoder_messages_total counter",
    ]
    lines += [f'sitepulse_ingest_decoder_messages_total{{worker="{_label(w)}",decoder="{_label(d)}"}} {n}'
              for w, d, n in messages]
    lines += [
        "# HELP sitepulse_ingest_decoder_rejects_total Rejects of each decoder by reason class",
        "# TYPE sitepulse_ingest_decoder_rejects_total counter",
    ]
    lines += [
        f'sitepulse_ingest_decoder_rejects_total{{worker="{_label(w)}",decoder="{_label(d)}",reason="{_label(r)}"}} {n}'
        for w, d, r, n in rejects
    ]
    return lines
