"""Trials on history: what a service would have found on a site's recorded telemetry, before it is switched on.

A trial is started for a (site, service) over a past period, moves the service to the lifecycle stage ``trial``
when it has not run there yet, runs it (microservices.trial) with its outputs apart from the live ones and no
alert raised, and keeps, beside what it found (rows per table, the alerts it would have raised), the service's
KPIs over the period: under the trial and as the site had them (live results, if the service ran then). Trials
stay after the service is switched on: they are the site's "before".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from microservices.sdk import Service
from microservices.trial import TrialOutcome, run_trial, trial_key, with_dependencies
from registry.enablement import set_enablement, site_enablements
from registry.evaluation import daily_values
from registry.lifecycle import NEXT_STAGES
from sitepulse.errors import Conflict, InvalidInput, NotFound

MAX_PERIOD = timedelta(days=92)
COLUMNS = ("id, site_id, service, period_from, period_to, status, error, requested_by, started_at, finished_at,"
           " progress_at, samples, found, alerts, examples, kpis")


def create_trial(conn: psycopg.Connection, services: Mapping[str, Service], site_id: str, name: str,
                 start: datetime, end: datetime, requested_by: str) -> int:
    """Record a trial (status ``running``) and move the service to stage ``trial`` if it never ran on the site."""
    if name not in services:
        raise NotFound(f"no service {name!r}; installed: {', '.join(sorted(services))}")
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("'from' and 'to' need a time zone (e.g. 2026-05-01T00:00:00Z)")
    if end <= start:
        raise InvalidInput(f"'to' ({end.isoformat()}) must be after 'from' ({start.isoformat()})")
    if end - start > MAX_PERIOD:
        raise InvalidInput(f"a trial covers at most {MAX_PERIOD.days} days; split the period")
    if start >= datetime.now(UTC):
        raise InvalidInput("a trial runs on recorded history: 'from' must be in the past")
    running = conn.execute("SELECT id FROM service_trials WHERE site_id = %s AND service = %s AND status = 'running'",
                           (site_id, name)).fetchone()
    if running:
        raise Conflict(f"trial {running[0]} of {name!r} on site {site_id!r} is still running; wait for it")
    current = site_enablements(conn, site_id).get(name)
    stage = current.stage if current else None
    if stage != "trial" and "trial" in NEXT_STAGES[stage]:
        set_enablement(conn, dict(services), site_id, name, enabled=None, stage="trial", changed_by=requested_by,
                       reason=f"trial on history {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    row = conn.execute("INSERT INTO service_trials (site_id, service, period_from, period_to, requested_by)"
                       " VALUES (%s, %s, %s, %s, %s) RETURNING id", (site_id, name, start, end, requested_by))
    return int(row.fetchone()[0])


def execute_trial(conn: psycopg.Connection, services: Mapping[str, Service], trial_id: int,
                  progress: Callable[[str, datetime], None] | None = None) -> dict[str, Any]:
    """Run a recorded trial to its end (``conn`` in autocommit: progress shows while it runs); a failure is kept
    on the trial with its reason and raised."""
    trial = _one(conn, trial_id)
    name, site_id = trial["service"], trial["site_id"]
    key = trial_key(site_id, trial_id)

    def step(service: str, until: datetime) -> None:
        conn.execute("UPDATE service_trials SET progress_at = %s WHERE id = %s", (until, trial_id))
        if progress is not None:
            progress(service, until)

    try:
        outcome = run_trial(conn, services, name, site_id, trial["period_from"], trial["period_to"], key, step)
        kpis = trial_kpis(conn, services[name], site_id, key, trial["period_from"], trial["period_to"])
    except Exception as exc:
        conn.execute("UPDATE service_trials SET status = 'failed', error = %s, finished_at = now() WHERE id = %s",
                     (f"{type(exc).__name__}: {exc}"[:2000], trial_id))
        raise
    _finish(conn, trial_id, outcome, kpis)
    return _one(conn, trial_id)


def _finish(conn: psycopg.Connection, trial_id: int, outcome: TrialOutcome, kpis: list[dict[str, Any]]) -> None:
    found = asdict(outcome)
    conn.execute("UPDATE service_trials SET status = 'done', finished_at = now(), samples = %s, found = %s,"
                 " alerts = %s, examples = %s, kpis = %s WHERE id = %s",
                 (outcome.samples, Jsonb(found["rows"]), Jsonb(outcome.alerts), Jsonb(outcome.examples),
                  Jsonb(kpis), trial_id))


def trial_kpis(conn: psycopg.Connection, service: Service, site_id: str, key: str, start: datetime,
               end: datetime) -> list[dict[str, Any]]:
    """Each KPI's daily mean over the period: under the trial, and as the site had it (live results)."""
    out = []
    with conn.transaction():
        conn.execute("SET LOCAL TIME ZONE 'UTC'")  # daily_sql casts to date: days are UTC days
        for kpi in service.kpis:
            trial_days = daily_values(conn, kpi, key, start.date(), end.date() + timedelta(days=1))
            site_days = daily_values(conn, kpi, site_id, start.date(), end.date() + timedelta(days=1))
            out.append({"name": kpi.name, "description": kpi.description, "unit": kpi.unit,
                        "higher_is_better": kpi.higher_is_better, "days": int(trial_days.size),
                        "trial_mean": float(trial_days.mean()) if trial_days.size else None,
                        "site_mean": float(site_days.mean()) if site_days.size else None})
    return out


def list_trials(conn: psycopg.Connection, site_id: str, service: str | None = None) -> list[dict[str, Any]]:
    """The site's trials, newest first."""
    rows = conn.execute(f"SELECT {COLUMNS} FROM service_trials WHERE site_id = %s AND (%s::text IS NULL OR"
                        " service = %s) ORDER BY id DESC", (site_id, service, service))
    return [_as_dict(rows.description, r) for r in rows.fetchall()]


def get_trial(conn: psycopg.Connection, site_id: str, trial_id: int) -> dict[str, Any]:
    trial = _one(conn, trial_id)
    if trial["site_id"] != site_id:
        raise NotFound(f"no trial {trial_id} on site {site_id!r}")
    return trial


def trial_rows(conn: psycopg.Connection, services: Mapping[str, Service], trial: dict[str, Any], table: str,
               limit: int, offset: int) -> list[dict[str, Any]]:
    """Rows a trial wrote to one of its services' tables (``schema.table``), oldest step first."""
    tables = {t for s in with_dependencies(services, trial["service"]) for t in s.tables}
    if table not in tables:
        raise NotFound(f"trial {trial['id']} wrote no table {table!r}; its tables: {', '.join(sorted(tables))}")
    schema, name = table.split(".", 1)
    query = sql.SQL("SELECT * FROM {}.{} WHERE site_id = %s ORDER BY run_seq LIMIT %s OFFSET %s").format(
        sql.Identifier(schema), sql.Identifier(name))
    rows = conn.execute(query, (trial_key(trial["site_id"], trial["id"]), limit, offset))
    return [_as_dict(rows.description, r) for r in rows.fetchall()]


def _one(conn: psycopg.Connection, trial_id: int) -> dict[str, Any]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM service_trials WHERE id = %s", (trial_id,))
    row = rows.fetchone()
    if row is None:
        raise NotFound(f"no trial {trial_id}")
    return _as_dict(rows.description, row)


def _as_dict(description: Any, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column.name: value for column, value in zip(description, row, strict=True)}
