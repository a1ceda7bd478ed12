"""Incremental processing: any split of the same telemetry into batches gives the same tables and alerts."""

from __future__ import annotations

import pandas as pd

from microservices.testing import run_in_chunks
from microservices.traffic_awareness import TrafficAwareness
from microservices.traffic_awareness.score import LANE_OFFSET_M
from microservices.traffic_awareness.settings import TrafficSettings

SETTINGS = TrafficSettings(lane_offset_m=LANE_OFFSET_M)


def canonical(tables: dict[str, pd.DataFrame]) -> dict[str, list[tuple]]:
    """Tables as sorted row tuples (road use summed per segment, minute and machine: it stores increments)."""
    out = {}
    for name, frame in tables.items():
        if name == "segment_use":
            frame = frame.groupby(["segment", "minute", "machine_id"], as_index=False)[
                ["samples", "speed_sum_kmh", "dwell_ms"]].sum()
            frame["speed_sum_kmh"] = frame["speed_sum_kmh"].round(6)
        if name == "_alerts":
            frame = frame[["key", "level", "at", "machine_id", "message"]]
        out[name] = sorted(map(tuple, frame.astype(str).to_numpy().tolist()))
    return out


def test_batch_boundaries_do_not_change_results(traffic_run) -> None:
    telemetry = traffic_run.telemetry[traffic_run.telemetry["ts"] < traffic_run.telemetry["ts"].min()
                                      + pd.Timedelta(minutes=25)]
    runs = [canonical(run_in_chunks(TrafficAwareness(), telemetry, site=traffic_run.site, settings=SETTINGS,
                                    chunk=chunk, machines=traffic_run.machines))
            for chunk in ("30min", "7min", "37s")]
    assert runs[0]["services"] and runs[0]["queues"] and runs[0]["segment_use"]
    assert runs[0]["encounters"] and len(runs[0]["_alerts"]) >= len(runs[0]["encounters"])
    for other in runs[1:]:
        assert other == runs[0]
