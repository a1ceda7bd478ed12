"""Each (service, site) pair as the runners' unit of work: leased from PostgreSQL, with its own health and back-off.

Why plain ``FOR UPDATE SKIP LOCKED`` on a table of pairs rather than a job queue (procrastinate, PgQueuer):
a pair is not a job that runs once, it is a stream a service follows for ever, with a checkpoint already in
PostgreSQL. What the runners need is "who follows this stream now" (a lease that expires when its runner
dies) and "is anything waiting for it" (a due time that telemetry and dependency notifications bring
forward). That is one small table and three statements; a job queue would add its own schema, a worker
model and a job per step, and still need the lease. The checkpoint's ``FOR UPDATE`` in every step stays the
guarantee that no two runners ever run one step at once, even if a lease were lost while its runner paused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

LEASE_S = 8.0  # a SIGKILLed runner's pairs are free this long after its last renewal
RENEW_EVERY_S = 2.0
IDLE_RECHECK_S = 5.0  # a pair nothing woke is still looked at this often (a NOTIFY cut short, a clock)
MAX_BACKOFF_S = 60.0
STICKY_S = 30.0  # a site stays with the runner that last stepped it this long, unless nothing else is due


@dataclass(frozen=True)
class Pair:
    service: str
    site_id: str

    def __str__(self) -> str:
        return f"{self.service}/{self.site_id}"


def backoff_s(failures: int) -> float:
    """Delay before retrying a pair after its ``failures``-th consecutive failure: 1, 2, 4 ... 60 s."""
    return min(MAX_BACKOFF_S, 0.5 * 2**failures)


def sync_pairs(conn: psycopg.Connection, services: Iterable[str]) -> None:
    """One row per enabled pair of these services (a site enabled since the last sync gets its row)."""
    conn.execute(
        "INSERT INTO service_pairs (service, site_id) SELECT service, site_id FROM service_enablement"
        " WHERE enabled AND service = ANY(%s) ON CONFLICT DO NOTHING",
        (list(services),),
    )


CLAIM_SQL = """
UPDATE service_pairs p SET runner = %(runner)s, lease_until = now() + make_interval(secs => %(lease)s),
    due_at = now() + make_interval(secs => %(idle)s)
WHERE (p.service, p.site_id) = (
    SELECT q.service, q.site_id FROM service_pairs q
    JOIN service_enablement e ON e.service = q.service AND e.site_id = q.site_id AND e.enabled
    WHERE q.service = ANY(%(services)s) AND (q.lease_until IS NULL OR q.lease_until < now())
      AND q.retry_at <= now() AND (q.due_at <= now() OR q.site_id = %(site)s)
      AND (%(site)s::text IS NULL OR q.site_id = %(site)s)
    ORDER BY EXISTS (SELECT 1 FROM service_pairs o WHERE o.site_id = q.site_id AND o.runner <> %(runner)s
                     AND (o.lease_until > now() OR o.updated_at > now() - make_interval(secs => %(sticky)s))),
             q.due_at, md5(%(runner)s || q.site_id)
    LIMIT 1 FOR UPDATE OF q SKIP LOCKED)
RETURNING p.service, p.site_id
"""


def claim_next(
    conn: psycopg.Connection, runner: str, services: list[str], lease_s: float = LEASE_S, site_id: str | None = None
) -> Pair | None:
    """Lease the pair due longest among the free ones, or None: no coordinator, no waiting on another runner's
    rows (SKIP LOCKED). Unless something wakes it sooner, it is due again ``IDLE_RECHECK_S`` later.

    Sites another runner is working on, or stepped in the last ``STICKY_S``, come last, and pairs due at once are
    taken in an order of sites of this runner's own (a hash of runner and site): its workers take one site's pairs
    together while another runner walks the sites in another order, so the services of a site mostly run in one
    process, which reads the site's telemetry once for all of them (microservices/shared_reads.py).

    With ``site_id``, only that site's pairs, due or not: their dependency has just moved there (the runner takes
    the dependant while the rows it will read are still in memory)."""
    row = conn.execute(
        CLAIM_SQL,
        {"runner": runner, "lease": lease_s, "services": services, "idle": IDLE_RECHECK_S, "site": site_id,
         "sticky": STICKY_S},
    ).fetchone()
    return Pair(*row) if row else None


def claim_pair(conn: psycopg.Connection, runner: str, pair: Pair, lease_s: float = LEASE_S) -> bool:
    """Lease this pair if no live runner holds it (``run-services --from`` rewinds each pair under a lease)."""
    return conn.execute(
        "UPDATE service_pairs SET runner = %s, lease_until = now() + make_interval(secs => %s)"
        " WHERE service = %s AND site_id = %s AND (lease_until IS NULL OR lease_until < now() OR runner = %s)"
        " RETURNING 1",
        (runner, lease_s, pair.service, pair.site_id, runner),
    ).fetchone() is not None


def renew(conn: psycopg.Connection, runner: str, lease_s: float = LEASE_S) -> int:
    """Extend every lease this runner holds (called while its steps run); returns how many."""
    return conn.execute(
        "UPDATE service_pairs SET lease_until = now() + make_interval(secs => %s)"
        " WHERE runner = %s AND lease_until IS NOT NULL",
        (lease_s, runner),
    ).rowcount


def release_ok(conn: psycopg.Connection, runner: str, pair: Pair, due_in_s: float | None) -> bool:
    """Give the pair back healthy, due again in ``due_in_s`` (0: its turn ended with work left; None: when
    woken). Returns whether it was failing before (the service's own health may turn ok)."""
    row = conn.execute(
        "UPDATE service_pairs p SET lease_until = NULL,"  # runner stays: who last stepped it (see CLAIM_SQL)
        " due_at = CASE WHEN %s::float8 IS NULL THEN p.due_at ELSE least(p.due_at, now() + make_interval(secs => %s))"
        " END, status = 'ok', failures = 0, last_success_at = now(), updated_at = now()"
        " FROM service_pairs old WHERE old.service = p.service AND old.site_id = p.site_id"
        " AND p.service = %s AND p.site_id = %s AND p.runner = %s RETURNING old.status",
        (due_in_s, due_in_s, pair.service, pair.site_id, runner),
    ).fetchone()
    return bool(row) and row[0] != "ok"


def release_failed(conn: psycopg.Connection, runner: str, pair: Pair, error: str) -> int:
    """Give the pair back failing: its own attempt count, a retry time after its own back-off; returns the
    attempt count."""
    row = conn.execute(
        "UPDATE service_pairs SET lease_until = NULL, status = 'failing',"
        " failures = failures + 1, last_error = %s, last_error_at = now(), updated_at = now(),"
        " retry_at = now() + make_interval(secs => least(%s, 0.5 * 2 ^ (failures + 1)))"
        " WHERE service = %s AND site_id = %s RETURNING failures",
        (error[:2000], MAX_BACKOFF_S, pair.service, pair.site_id),
    ).fetchone()
    return row[0] if row else 0


def mark_due(conn: psycopg.Connection, services: list[str], site_ids: list[str] | None) -> None:
    """Telemetry arrived for these sites (None: any), or a dependency progressed: look at the pairs soon."""
    if site_ids is None:
        conn.execute("UPDATE service_pairs SET due_at = now() WHERE service = ANY(%s) AND due_at > now()", (services,))
    else:
        conn.execute(
            "UPDATE service_pairs SET due_at = now() WHERE service = ANY(%s) AND site_id = ANY(%s) AND due_at > now()",
            (services, site_ids),
        )


def retry_now(conn: psycopg.Connection, service: str, site_id: str) -> dict[str, Any] | None:
    """An admin's "retry now": the pair's back-off ends at once (its attempt count stays); None if no such pair."""
    row = conn.execute(
        "UPDATE service_pairs SET retry_at = now(), due_at = now(), updated_at = now()"
        " WHERE service = %s AND site_id = %s RETURNING service",
        (service, site_id),
    ).fetchone()
    return pair_health(conn).get((service, site_id)) if row else None


HEALTH_KEYS = ("status", "failures", "last_error", "last_error_at", "last_success_at", "retry_at", "runner")


def pair_health(conn: psycopg.Connection) -> dict[tuple[str, str], dict[str, Any]]:
    """Each pair's health as the runners last recorded it (``retry_at`` only while backing off)."""
    rows = conn.execute(
        "SELECT service, site_id, status, failures, last_error, last_error_at, last_success_at,"
        " CASE WHEN retry_at > now() THEN retry_at END, CASE WHEN lease_until > now() THEN runner END"
        " FROM service_pairs ORDER BY service, site_id"
    )
    return {(r[0], r[1]): dict(zip(HEALTH_KEYS, r[2:], strict=True)) for r in rows}


def prometheus_lines(conn: psycopg.Connection, label_value: Any) -> list[str]:
    """``sitepulse_service_site_failures{service,site}``: consecutive failures of each pair (0 = healthy)."""
    lines = [
        "# HELP sitepulse_service_site_failures Consecutive failures of a service on one site (0: healthy)",
        "# TYPE sitepulse_service_site_failures gauge",
    ]
    for (service, site_id), health in pair_health(conn).items():
        labels = f'service="{label_value(service)}",site="{label_value(site_id)}"'
        lines.append(f"sitepulse_service_site_failures{{{labels}}} {health['failures']}")
    return lines
