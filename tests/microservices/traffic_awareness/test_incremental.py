"""Incremental processing: any split of the same telemetry into batches gives the same tables and alerts."""

from __future__ import annotations

import orjson
import pandas as pd

from evaluation.pipeline import run_in_chunks, telemetry_from_messages
from evaluation.traffic_awareness import LANE_OFFSET_M
from microservices.traffic_awareness import TrafficAwareness
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


def test_an_encounter_open_across_steps_without_closing_speed_keeps_a_json_state() -> None:
    """A close pair that is not closing in has no time to collision (inf), which jsonb cannot hold: an episode
    still open at the end of a step must be carried as JSON and give the same encounter as one step (found by the
    60-minute soak, where the runner refused the state)."""
    start = pd.Timestamp("2026-03-02T06:00:00Z")
    messages = []
    for second in range(90):  # H2 drives 6 m ahead of H1 at the same 18 km/h (close, never closing in), then
        ahead = 6.0 + 5.0 * min(second, 40) + 10.0 * max(second - 40, 0)  # pulls away at 36 km/h after 40 s
        for machine, east_m, speed in (("H1", 5.0 * second, 18.0), ("H2", ahead, 18.0 if second < 40 else 36.0)):
            sample = {"ts": (start + pd.Timedelta(seconds=second)).isoformat(), "lat": 59.3,
                      "lon": 18.1 + east_m / 56_800, "speed_kmh": speed, "heading_deg": 90.0, "engine_on": True}
            messages.append((f"sites/pit/machines/{machine}/telemetry", orjson.dumps(sample)))
    telemetry = telemetry_from_messages(messages)
    machines = pd.DataFrame([["H1", "hauler", "t", 90_000], ["H2", "hauler", "t", 90_000]],
                            columns=["machine_id", "kind", "model", "rated_payload_kg"])
    runs = [run_in_chunks(TrafficAwareness(), telemetry, settings=SETTINGS, chunk=chunk, machines=machines)
            for chunk in ("10min", "15s")]
    encounters = [run["encounters"] for run in runs]
    assert len(encounters[0]) == 1 and pd.isna(encounters[0]["min_ttc_s"].iloc[0])  # never closing
    assert canonical({"encounters": encounters[1]}) == canonical({"encounters": encounters[0]})
