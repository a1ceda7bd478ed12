"""A trial: a service run over a site's recorded history, its outputs kept apart from the live ones.

Before a site pays for a service, the provider shows what it would have found on the site's own history
(co-creation starts from the customer's data). A trial writes the service's rows under a shadow key,
``<site>@trial-<id>``: no site id can hold an '@', so trial rows never mix with a site's live results, and the
service's own KPI queries and route reads work on them unchanged. It stores no alert (it counts what it would
have raised) and runs the services it depends on first, under the same key, so a dependant reads its inputs
as it would live. Steps are windows of recorded time, as the runner would have met them live.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from graphlib import TopologicalSorter
from typing import Any

import psycopg

from ingest.reader import read_telemetry_range
from microservices.clock import telemetry_for
from microservices.frames import frame_reader
from microservices.runner import call_process, delete_outputs_after, site_machines, site_settings, write_outputs
from microservices.sdk import Batch, Service
from sitepulse.sites import load_site

WINDOW = timedelta(hours=1)
EXAMPLES = 20  # alerts it would have raised, kept word for word


@dataclass
class TrialOutcome:
    """What a trial found: rows per output table, alerts it would have raised, telemetry it read."""

    samples: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)


def trial_key(site_id: str, trial_id: int) -> str:
    """The shadow site id a trial's rows are written under."""
    return f"{site_id}@trial-{trial_id}"


def with_dependencies(services: Mapping[str, Service], name: str) -> list[Service]:
    """``name`` and every service it depends on, dependencies first."""
    needed: dict[str, tuple[str, ...]] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current not in needed:
            needed[current] = services[current].depends_on
            pending.extend(needed[current])
    return [services[n] for n in TopologicalSorter(needed).static_order()]


def clear_trial(conn: psycopg.Connection, services: list[Service], key: str) -> None:
    """Remove every row written under ``key`` (a trial run again starts clean; its steps count from 1)."""
    for service in services:
        delete_outputs_after(conn, service, key, 0)


def run_trial(conn: psycopg.Connection, services: Mapping[str, Service], name: str, site_id: str,
              start: datetime, end: datetime, key: str,
              progress: Callable[[str, datetime], None] | None = None) -> TrialOutcome:
    """Run ``name`` (and its dependencies) over the site's telemetry in ``[start, end)``, rows under ``key``."""
    chain = with_dependencies(services, name)
    clear_trial(conn, chain, key)
    site = load_site(conn, site_id)
    machines = site_machines(conn, site_id, site.machines if site else [])
    outcome = TrialOutcome()
    levels: Counter[str] = Counter()
    for service in chain:
        settings = site_settings(conn, service, site_id)
        state: dict[str, Any] = {}
        seq = 0
        at = start
        while at < end:
            until = min(at + WINDOW, end)
            rows = read_telemetry_range(conn, site_id, at, until)
            if not rows.empty:
                batch = Batch(site_id=key, telemetry=telemetry_for(service, rows), site=site, machines=machines,
                              read=frame_reader(conn))
                outputs, state = call_process(service, batch, state, settings)
                state = json.loads(json.dumps(state, allow_nan=False))  # as the runner carries it (jsonb)
                seq += 1
                frames = outputs.frames()
                write_outputs(conn, service, key, seq, frames)
                for table, frame in frames.items():
                    qualified = f"{service.schema}.{table}"
                    outcome.rows[qualified] = outcome.rows.get(qualified, 0) + len(frame)
                if service.name == name:
                    outcome.samples += len(rows)
                    for alert in outputs.alerts:
                        levels[alert.level] += 1
                        if len(outcome.examples) < EXAMPLES:
                            outcome.examples.append({"at": alert.at.isoformat() if alert.at else None,
                                                     "level": alert.level, "machine_id": alert.machine_id,
                                                     "message": alert.message})
            if progress is not None:
                progress(service.name, until)
            at = until
    outcome.alerts = dict(levels)
    return outcome
