"""The evaluation's recommendation against the simulated truth: two weeks of shifts where weight loading,
switched on mid-way, changes how trucks are loaded and traffic awareness, switched on the same day, changes
nothing. For two seeds: weight loading is recommended to scale, traffic awareness is not.

Kept cheap (15-20 s a seed; 11 days of a 30-min shift at 0.5 Hz): the services' ``process`` is run over the
history as the runner would (evaluation/pipeline.py) and their tables are stored, so the evaluation reads
real rows; the pipeline path of the same history is ``sitepulse demo --history-days``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest

from evaluation.pipeline import run_in_chunks, telemetry_from_messages
from microservices.discovery import discover_services
from registry.enablement import set_enablement
from registry.evaluation import evaluate
from simulators.history import EFFECT_SERVICE, NULL_SERVICE, HistoryPlan, history_simulations
from simulators.site import load_site
from sitepulse.sites import save_site

SKIPPED_TABLES = {"track", "segment_use"}  # large, and no KPI reads them
# positioning is switched on but not run (its tables only feed KPIs of positioning and one of traffic awareness,
# which then read as "insufficient data"): it would double the test's time
PROCESSED = (EFFECT_SERVICE, NULL_SERVICE)


def _store(conn: psycopg.Connection, service_name: str, site_id: str, tables: dict[str, pd.DataFrame]) -> None:
    schema = service_name.replace("-", "_")
    for table, frame in tables.items():
        if table.startswith("_") or table in SKIPPED_TABLES or frame.empty:
            continue
        frame = frame.assign(site_id=site_id, run_seq=1)
        values = frame.astype(object).where(frame.notna(), None)
        columns = ", ".join(values.columns)
        with conn.cursor().copy(f"COPY {schema}.{table} ({columns}) FROM STDIN") as copy:
            for row in values.itertuples(index=False, name=None):
                copy.write_row(row)


def _history(conn: psycopg.Connection, site_id: str, plan: HistoryPlan, services: dict) -> None:
    """The plan's days through the services, their tables stored, the switches and the manager's use recorded."""
    site = load_site()
    save_site(conn, site_id, site)
    parts = []
    for _, sim in history_simulations(site, site_id, plan):
        parts.append(telemetry_from_messages(sim.messages()))
    telemetry = pd.concat(parts, ignore_index=True)
    for name in ("positioning", EFFECT_SERVICE, NULL_SERVICE):
        if name in PROCESSED:
            _store(conn, name, site_id, run_in_chunks(services[name], telemetry, site=site, chunk="1h"))
        set_enablement(conn, services, site_id, name, enabled=True)
    today = datetime.now(UTC).date()
    first = datetime.combine(plan.day(0, today), plan.shift_start_utc, tzinfo=UTC)
    conn.execute("UPDATE service_enablement SET enabled_at = CASE WHEN service = 'positioning' THEN %s ELSE %s END"
                 " WHERE site_id = %s", (first, plan.switched_on_at(today), site_id))
    views = [(first + timedelta(days=d, hours=3), site_id, name, "site manager", "card_view")
             for d in range(plan.days) for name in (EFFECT_SERVICE, NULL_SERVICE)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO usage_events (at, site_id, service, principal, action) VALUES (%s, %s, %s, %s,"
                        " %s)", views)


@pytest.mark.parametrize("seed", [1, 2])
def test_recommendation_matches_the_simulated_truth(database_url: str, seed: int) -> None:
    services = discover_services(None)
    plan = HistoryPlan(days=11, switch_day=5, shift_s=1800, hz=0.5, seed=seed)
    site_id = f"history-{seed}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        _history(conn, site_id, plan, services)
        items = {i["service"]: i for i in evaluate(conn, services, [site_id])}
    effect, null = items[EFFECT_SERVICE], items[NULL_SERVICE]
    summary = {name: [(k["name"], k["verdict"], k["interval"]) for k in item["kpis"]]
               for name, item in items.items()}
    assert effect["windows"]["after"]["days"] >= 5 and effect["windows"]["before"]
    assert effect["recommendation"] == "scale", summary
    assert null["recommendation"] in ("iterate", "retire"), summary
    assert not [k for k in null["kpis"] if k["verdict"] == "improved"], summary
