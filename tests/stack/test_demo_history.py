"""The demo's history bookkeeping on a real database: when the services count as caught up, and the switches, use,
alarms and needs dated as the simulated truth says (written through the owners' functions, not the demo's SQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg

from ingest.partitions import Partitions
from ingest.reader import Watermark
from simulators.history import EFFECT_SERVICE, NULL_SERVICE, HistoryPlan
from stack.demo import DEMO_NEEDS, _record_truth, _services_behind

SITE = "demo-history"


def _enable(conn: psycopg.Connection, *services: str, enabled: bool = True) -> None:
    for service in services:
        conn.execute("INSERT INTO service_enablement (site_id, service, enabled) VALUES (%s, %s, %s)",
                     (SITE, service, enabled))


def test_services_are_behind_until_their_checkpoint_passes_the_newest_row(db: psycopg.Connection) -> None:
    _enable(db, "positioning", EFFECT_SERVICE)
    _enable(db, NULL_SERVICE, enabled=False)
    assert _services_behind(db, SITE) == []  # nothing stored: nothing to wait for
    stamp = datetime.now(UTC)
    partitions = Partitions(enabled=True)
    partitions.load(db)
    partitions.ensure(db, stamp, stamp)
    db.execute("INSERT INTO telemetry (site_id, machine_id, ts) VALUES (%s, 'H1', %s)", (SITE, stamp))
    newest = db.execute("SELECT max(xid::text::bigint) FROM telemetry WHERE site_id = %s", (SITE,)).fetchone()[0]
    assert sorted(_services_behind(db, SITE)) == sorted(["positioning", EFFECT_SERVICE])  # the disabled one is not
    db.execute("INSERT INTO service_checkpoints (service, site_id, watermark) VALUES ('positioning', %s, %s)",
               (SITE, Watermark(newest + 1).to_json()))
    db.execute("INSERT INTO service_checkpoints (service, site_id, watermark) VALUES (%s, %s, %s)",
               (EFFECT_SERVICE, SITE, Watermark(newest).to_json()))  # at the newest row: not past it yet
    assert _services_behind(db, SITE) == [EFFECT_SERVICE]


def test_the_truth_is_recorded_once_as_simulated(db: psycopg.Connection) -> None:
    site = SITE + "-truth"
    for service in ("positioning", EFFECT_SERVICE, NULL_SERVICE):
        db.execute("INSERT INTO service_enablement (site_id, service, enabled) VALUES (%s, %s, true)", (site, service))
    plan, today = HistoryPlan(days=6, switch_day=3), date(2026, 3, 20)
    first = datetime.combine(plan.day(0, today), plan.shift_start_utc, tzinfo=UTC)
    for day in range(14):  # alarms of the history (before today) and one of today
        at = datetime.combine(today, datetime.min.time(), tzinfo=UTC) - timedelta(days=6) + timedelta(hours=12 * day)
        db.execute("INSERT INTO service_alerts (site_id, service, key, level, message, at) VALUES"
                   " (%s, 'traffic-awareness', %s, 'warning', 'close pass', %s)", (site, f"k{day}", at))

    _record_truth(db, site, plan, today)
    _record_truth(db, site, plan, today)  # the demo run again records nothing twice

    dated = dict(db.execute("SELECT service, enabled_at FROM service_enablement WHERE site_id = %s", (site,)))
    assert dated == {"positioning": first, EFFECT_SERVICE: plan.switched_on_at(today),
                     NULL_SERVICE: plan.switched_on_at(today)}
    uses = db.execute("SELECT action, count(*), min(at) FROM usage_events WHERE site_id = %s GROUP BY action"
                      " ORDER BY action", (site,)).fetchall()
    assert uses == [("card_view", 3 * plan.days, first + timedelta(hours=2)),
                    ("export", 2, first + timedelta(hours=2, minutes=5))]
    alerts = db.execute("SELECT id, at, published_at, acknowledged_at, acknowledged_by FROM service_alerts"
                        " WHERE site_id = %s ORDER BY id", (site,)).fetchall()
    today_start = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    for alert_id, at, published, acknowledged, by in alerts:
        if at >= today_start:
            assert (published, acknowledged) == (None, None)
        elif alert_id % 7 == 0:
            assert (published, acknowledged, by) == (at, None, None)
        else:
            assert (published, acknowledged, by) == (at, at + timedelta(minutes=4), "demo site manager")
    needs = db.execute("SELECT text, created_at FROM needs WHERE site_id = %s ORDER BY id", (site,)).fetchall()
    assert needs == [(text, first - timedelta(days=7)) for text, *_ in DEMO_NEEDS]
