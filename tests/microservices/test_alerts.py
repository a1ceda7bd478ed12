"""Storing alerts: a batch in one statement, each key once (the first stands), in the batch's order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from microservices.alerts import store_alerts
from microservices.sdk import Alert

AT = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def _stored(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT key, level, at, machine_id, message, data FROM service_alerts"
                        " WHERE site_id = 'a' AND service = 'svc' ORDER BY id").fetchall()


def test_a_batch_stores_each_new_key_once_in_order_and_counts_the_new(runner_db: str) -> None:
    with psycopg.connect(runner_db, autocommit=True) as conn:
        first = [
            Alert("k2", "second key first", level="critical", at=AT, machine_id="T1", data={"zone": "pit"}),
            Alert("k1", "over already", at=AT, ended_at=AT + timedelta(seconds=30)),
            Alert("k2", "the same key again", level="info"),
            Alert("k3", "its own end stands", ended_at=AT, data={"ended_at": "2026-03-02T07:00:00+00:00"}),
        ]
        assert store_alerts(conn, "a", "svc", first) == 3
        assert store_alerts(conn, "a", "svc", [Alert("k1", "replayed"), Alert("k4", "new", machine_id="L1")]) == 1
        assert store_alerts(conn, "a", "svc", []) == 0
        assert store_alerts(conn, "b", "svc", [Alert("k1", "another site")]) == 1
        stored = _stored(conn)
    assert [(key, message) for key, _, _, _, message, _ in stored] == [
        ("k2", "second key first"), ("k1", "over already"), ("k3", "its own end stands"), ("k4", "new")]
    assert stored[0][1:4] == ("critical", AT, "T1") and stored[0][5] == {"zone": "pit"}
    assert stored[1][2] == AT and stored[1][5] == {"ended_at": "2026-03-02T06:00:30+00:00"}
    assert stored[2][2:4] == (None, None) and stored[2][5] == {"ended_at": "2026-03-02T07:00:00+00:00"}
