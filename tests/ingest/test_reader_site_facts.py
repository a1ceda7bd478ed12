"""The small facts other packages ask ingest about a site's stored telemetry (instead of their own SQL on it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from ingest.partitions import Partitions
from ingest.reader import current_watermark, has_sample, newest_sample_ts, stored_rows, stored_since

SITE = "reader-facts"
T0 = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)


def test_site_facts_of_stored_telemetry(db: psycopg.Connection) -> None:
    assert (newest_sample_ts(db, SITE), stored_rows(db, SITE)) == (None, 0)
    partitions = Partitions(enabled=True)
    partitions.load(db)
    partitions.ensure(db, T0, T0 + timedelta(minutes=5))
    before = current_watermark(db)
    assert not stored_since(db, SITE, before)
    for machine, minutes in (("H1", 0), ("H1", 2), ("L1", 1)):
        db.execute("INSERT INTO telemetry (site_id, machine_id, ts) VALUES (%s, %s, %s)",
                   (SITE, machine, T0 + timedelta(minutes=minutes)))
    db.execute("INSERT INTO telemetry (site_id, machine_id, ts) VALUES ('elsewhere', 'H1', %s)",
               (T0 + timedelta(minutes=4),))
    assert newest_sample_ts(db, SITE) == T0 + timedelta(minutes=2)
    assert stored_rows(db, SITE) == 3
    assert has_sample(db, SITE, "L1", (T0 + timedelta(minutes=1)).isoformat())
    assert has_sample(db, SITE, "H1", T0) and not has_sample(db, SITE, "L1", T0)
    assert stored_since(db, SITE, before) and not stored_since(db, "nowhere", before)
