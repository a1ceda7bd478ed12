"""process() is incremental and deterministic: any split into batches gives the same results and alerts."""

from __future__ import annotations

import pandas as pd
import pytest

from evaluation.pipeline import run_in_chunks
from microservices.positioning import Positioning

KEYS = {
    "track": ["machine_id", "ts"],
    "zone_entries": ["machine_id", "zone", "entered_at"],
    "zone_visits": ["machine_id", "zone", "entered_at"],
    "speeding": ["machine_id", "started_at"],
}


def comparable(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Event tables row for row; activity (exact integer increments) summed per machine and minute."""
    out = {t: tables[t].sort_values(k).reset_index(drop=True) for t, k in KEYS.items()}
    out["activity"] = tables["activity"].groupby(["machine_id", "minute", "shift_date", "shift"]).sum(
        numeric_only=True).reset_index()
    alerts = tables["_alerts"]
    out["_alerts"] = alerts.assign(data=alerts["data"].map(repr)).sort_values("key").reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def whole(simulated) -> dict[str, pd.DataFrame]:
    return comparable(run_in_chunks(Positioning(), simulated.telemetry, site=simulated.site, chunk="1h"))


@pytest.mark.parametrize("chunk", ["1min", "7min"])
def test_results_do_not_depend_on_batch_size(simulated, whole, chunk: str) -> None:
    split = comparable(run_in_chunks(Positioning(), simulated.telemetry, site=simulated.site, chunk=chunk))
    for table, frame in whole.items():
        pd.testing.assert_frame_equal(split[table], frame, check_exact=True, obj=table)


def test_the_run_produces_every_kind_of_result(whole) -> None:
    assert {len(f) > 0 for f in whole.values()} == {True}
    assert whole["track"]["jump"].any()  # the fixture's GNSS jumps were seen and rejected
    assert (whole["activity"]["distance_mm"] > 0).any()
