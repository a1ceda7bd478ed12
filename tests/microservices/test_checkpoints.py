"""Checkpoint's own moves, without a database: which samples are late, and how far a step advances it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from microservices.checkpoints import SITE_WIDE, Checkpoint

T0 = datetime(2026, 11, 23, 6, tzinfo=UTC)


def _rows(*samples: tuple[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"machine_id": [m for m, _ in samples],
                         "ts": pd.to_datetime([T0 + timedelta(seconds=s) for _, s in samples], utc=True)})


def test_a_fresh_checkpoint_finds_nothing_late() -> None:
    assert Checkpoint("svc", "north").late(_rows(("h1", 0), ("h2", 5))) == {}


def test_late_is_the_oldest_sample_at_or_before_what_each_machine_processed() -> None:
    cp = Checkpoint("svc", "north", processed_until={"h1": (T0 + timedelta(seconds=10)).isoformat()})
    late = cp.late(_rows(("h1", 12), ("h1", 10), ("h1", 4), ("h2", 1)))
    assert late == {"h1": T0 + timedelta(seconds=4)}  # h2 was never processed: new, not late


def test_the_site_wide_final_time_makes_any_older_sample_late() -> None:
    cp = Checkpoint("svc", "north", processed_until={SITE_WIDE: (T0 + timedelta(seconds=30)).isoformat()})
    assert cp.late(_rows(("h9", 40), ("h9", 20))) == {SITE_WIDE: T0 + timedelta(seconds=20)}


def test_rewind_to_makes_every_known_machine_late_from_that_time() -> None:
    since = T0 - timedelta(hours=1)
    assert Checkpoint("svc", "north").late(_rows(), since) == {SITE_WIDE: since}
    cp = Checkpoint("svc", "north", processed_until={"h1": T0.isoformat(), "h2": T0.isoformat()})
    assert cp.late(_rows(), since) == {"h1": since, "h2": since}


def test_advance_moves_each_machine_forward_never_back() -> None:
    cp = Checkpoint("svc", "north", processed_until={"h1": (T0 + timedelta(seconds=50)).isoformat()})
    cp.advance(_rows(("h1", 20), ("h2", 7), ("h2", 9)), final_until=T0 + timedelta(seconds=5))
    assert cp.until("h1") == T0 + timedelta(seconds=50)
    assert cp.until("h2") == T0 + timedelta(seconds=9)
    assert cp.until(SITE_WIDE) == T0 + timedelta(seconds=5)
    cp.advance(_rows(), final_until=T0)
    assert cp.until(SITE_WIDE) == T0 + timedelta(seconds=5)
