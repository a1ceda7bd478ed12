"""Cycle detection on small synthetic traces: noise, bounce spikes, dropout gaps, late rows, chunking."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from evaluation.pipeline import run_in_chunks
from microservices.packed import unpack
from microservices.sdk import Batch
from microservices.weight_loading import WeightLoading
from microservices.weight_loading.detect import NS, merge_buffers, trailing_median
from microservices.weight_loading.settings import WeightLoadingSettings, band_of

RATED = 28_000.0


def _cycles(frame: pd.DataFrame, machines: pd.DataFrame, chunk: str = "10min", **settings: float) -> pd.DataFrame:
    tables = run_in_chunks(WeightLoading(), frame, settings=WeightLoadingSettings(**settings), chunk=chunk,
                           machines=machines)
    return tables.get("cycles", pd.DataFrame())


def test_trailing_median_uses_only_the_window_behind_each_sample() -> None:
    t = np.array([0, 1, 2, 3, 10, 11], dtype=np.int64) * NS
    x = np.array([1.0, 5.0, 3.0, 100.0, 7.0, np.nan])
    out = trailing_median(t, x, 3.0)
    assert out.tolist() == [1.0, 3.0, 3.0, 5.0, 7.0, 7.0]
    # the same values from a buffer that starts later: exact, so chunking cannot change a result
    assert trailing_median(t[2:], x[2:], 3.0)[2:].tolist() == out[4:].tolist()


def _whole_array_trailing_median(t: np.ndarray, x: np.ndarray, window_s: float) -> np.ndarray:
    """The definition the compiled sliding window replaced: each sample's window as a row, sorted, middle two."""
    start = np.searchsorted(t, t - int(window_s * NS), side="right")
    width = int((np.arange(len(t)) - start).max()) + 1
    offsets = np.arange(len(t))[:, None] - np.arange(width)[None, :]
    values = np.where(offsets >= start[:, None], x[np.clip(offsets, 0, None)], np.nan)
    values.sort(axis=1)
    count = np.count_nonzero(~np.isnan(values), axis=1)
    lo, hi = np.clip((count - 1) // 2, 0, None)[:, None], np.clip(count // 2, 0, width - 1)[:, None]
    median = (np.take_along_axis(values, lo, 1)[:, 0] + np.take_along_axis(values, hi, 1)[:, 0]) / 2
    return np.where(count > 0, median, np.nan)


@pytest.mark.parametrize("seed", range(6))
def test_trailing_median_equals_the_whole_array_definition_bit_for_bit(seed: int) -> None:
    """Irregular times (0.1-30 s apart: 10 Hz, gaps), quantised readings with repeats, NaN runs and sentinels."""
    rng = np.random.default_rng(seed)
    n = 3_000
    t = np.cumsum(rng.choice([NS // 10, NS // 2, NS, 2 * NS, 30 * NS], n, p=[0.3, 0.2, 0.4, 0.08, 0.02]))
    x = np.round(rng.normal(20_000, 3_000, n), -2)  # a 100-kg cell: neighbours repeat
    x[rng.random(n) < 0.1] = np.nan
    x[500:540] = np.nan
    x[rng.random(n) < 0.02] = -99.0
    for window_s in (0.5, 5.0, 12.0):
        expected = _whole_array_trailing_median(t, x, window_s)
        np.testing.assert_array_equal(trailing_median(t, x, window_s), expected)


def test_one_clean_cycle_is_found_with_its_settled_payload_and_passes(trace: Callable, synthetic_machines) -> None:
    frame = trace(passes=(9_000.0, 9_500.0, 9_500.0))
    cycles = _cycles(frame, synthetic_machines)
    assert len(cycles) == 1
    row = cycles.iloc[0]
    assert row["passes"] == 3
    assert abs(row["payload_kg"] - 28_000) < 0.01 * RATED  # settled median, not a bounce peak
    assert row["band"] == "target"
    assert row["load_start"] < row["loaded_at"] < row["haul_start"] < row["dump_start"] < row["dumped_at"]
    assert 90 <= row["load_s"] <= 130 and 230 <= row["haul_s"] <= 260 and 5 <= row["dump_s"] <= 30
    assert row["fuel_used_l"] > 0 and row["engine_hours"] > 0


def test_heavy_bounce_and_spikes_on_the_haul_neither_split_nor_inflate_the_cycle(trace, synthetic_machines) -> None:
    frame = trace(bounce_kg=4_000.0, noise_kg=500.0, seed=3)
    moving = frame.index[frame["speed_kmh"] > 20]
    spikes = moving[10:200:17]
    frame.loc[spikes[::2], "payload_kg"] = 60_000.0  # bounce peaks
    frame.loc[spikes[1::2], "payload_kg"] = 0.0  # momentary zero readings
    cycles = _cycles(frame, synthetic_machines)
    assert len(cycles) == 1
    assert abs(cycles["payload_kg"].iloc[0] - 28_000) < 0.015 * RATED


def test_a_dropout_gap_on_the_haul_and_half_hz_sampling_still_give_one_cycle(trace, synthetic_machines) -> None:
    frame = trace(hz=0.5, seed=5)
    moving = frame.index[frame["speed_kmh"] > 20]
    gap = moving[(moving > moving[40]) & (moving < moving[40] + 60)]  # two minutes lost while hauling
    cycles = _cycles(frame.drop(gap), synthetic_machines)
    assert len(cycles) == 1
    assert cycles["passes"].iloc[0] == 3


def test_overload_band_and_under_band(trace, synthetic_machines) -> None:
    heavy = trace(passes=(11_500.0, 11_500.0, 11_500.0), machine_id="H1")
    light = trace(passes=(8_000.0, 8_000.0, 8_000.0), machine_id="H2", seed=1)
    frame = pd.concat([heavy, light]).sort_values(["machine_id", "ts"]).reset_index(drop=True)
    cycles = _cycles(frame, synthetic_machines).set_index("machine_id")
    assert cycles.loc["H1", "band"] == "over_120"
    assert cycles.loc["H2", "band"] == "under"


def test_a_partial_lift_that_is_tipped_back_is_not_a_cycle(trace, synthetic_machines) -> None:
    frame = trace()
    standing = frame.index[(frame["speed_kmh"] == 0) & (frame["payload_kg"] < 1_000)][:15]
    frame.loc[standing, "payload_kg"] = 20_000.0  # 15 s of a sensor fault while empty
    cycles = _cycles(frame, synthetic_machines)
    assert len(cycles) == 1


@pytest.mark.parametrize("chunk", ["1min", "7min", "1h"])
def test_chunking_does_not_change_the_cycles(trace, synthetic_machines, chunk: str) -> None:
    frame = trace(cycles=4, seed=9)
    whole = _cycles(frame, synthetic_machines, chunk="1D")
    assert len(whole) == 4
    pd.testing.assert_frame_equal(_cycles(frame, synthetic_machines, chunk=chunk), whole)


def test_late_rows_merge_in_time_order() -> None:
    old = {"t": np.array([1, 3], dtype=np.int64), **{k: np.array([1.0, 3.0]) for k in
                                                     ("p", "v", "lat", "lon", "fuel", "eh")}}
    new = {"t": np.array([2, 3, 4], dtype=np.int64), **{k: np.array([2.0, 3.0, 4.0]) for k in
                                                        ("p", "v", "lat", "lon", "fuel", "eh")}}
    merged = merge_buffers(old, new)
    assert merged["t"].tolist() == [1, 2, 3, 4]
    assert merged["p"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_machines_without_rated_payload_are_skipped_and_reported(trace) -> None:
    machines = pd.DataFrame([["H1", "hauler", "A30G", None]], columns=["machine_id", "kind", "model",
                                                                      "rated_payload_kg"])
    frame = trace()
    batch = Batch("synthetic", frame, None, machines, lambda q, p=None: pd.DataFrame())
    out, state = WeightLoading().process(batch, {}, WeightLoadingSettings())
    skipped = out.frames()["skipped_machines"]
    assert skipped["machine_id"].tolist() == ["H1"] and "rated payload" in skipped["reason"].iloc[0]
    again, _ = WeightLoading().process(batch, state, WeightLoadingSettings())
    assert "skipped_machines" not in again.frames()  # reported once
    # a per-site override makes it count
    out, _ = WeightLoading().process(batch, {}, WeightLoadingSettings(rated_payload_kg={"H1": RATED}))
    assert len(out.frames()["cycles"]) == 1


def test_bands_follow_the_settings() -> None:
    s = WeightLoadingSettings()
    assert [band_of(f, s) for f in (0.89, 0.9, 1.1, 1.11, 1.2, 1.21)] == [
        "under", "target", "target", "over_110", "over_110", "over_120"]
    assert band_of(0.93, WeightLoadingSettings(under_fraction=0.95)) == "under"
    with pytest.raises(ValueError):
        WeightLoadingSettings(over_110_fraction=1.3)


def test_state_stays_small_and_json_ready(trace, synthetic_machines) -> None:
    import json

    frame = trace(cycles=3)
    batch = Batch("synthetic", frame, None, synthetic_machines, lambda q, p=None: pd.DataFrame())
    _, state = WeightLoading().process(batch, {}, WeightLoadingSettings())
    text = json.dumps(state, allow_nan=False)
    assert len(text) < 60_000
    assert len(unpack(state["m"]["H1"]["buf"]["t"], np.int64)) < 400  # a tail, not the history


def test_hourly_activity_is_written_once_an_hour_closes(trace, synthetic_machines) -> None:
    frame = trace(cycles=12)  # about two hours
    tables = run_in_chunks(WeightLoading(), frame, chunk="13min", machines=synthetic_machines)
    activity = tables["activity"]
    assert activity["hour"].is_unique
    whole = run_in_chunks(WeightLoading(), frame, chunk="1D", machines=synthetic_machines)["activity"]
    pd.testing.assert_frame_equal(activity, whole)
    assert activity["engine_hours"].iloc[0] == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("chunk", ["5s", "10min"])
def test_a_load_cut_by_a_long_gap_is_not_stitched_to_what_follows(trace, synthetic_machines, chunk: str) -> None:
    """The live demo's 0-kg cycle with loaded_at = dumped_at: yesterday's shift ended with a hauler half loaded at
    the loader; today it appears driving empty (a warm start after the history). Nothing of that load's end was
    seen, so it is no cycle; today's own cycle is found as usual."""
    yesterday = trace(seed=1)
    yesterday = yesterday[yesterday["ts"] < yesterday["ts"].iloc[0] + pd.Timedelta(seconds=200)]  # two passes in
    today = trace(seed=2)
    today["ts"] += pd.Timedelta(days=1)
    today["seq"] += len(yesterday)
    cycles = _cycles(pd.concat([yesterday, today], ignore_index=True), synthetic_machines, chunk=chunk)
    assert len(cycles) == 1, cycles[["loaded_at", "dumped_at", "payload_kg"]]
    row = cycles.iloc[0]
    assert row["loaded_at"] > today["ts"].iloc[0] and row["loaded_at"] < row["dumped_at"]
    assert abs(row["payload_kg"] - 28_000) < 0.02 * RATED


@pytest.mark.parametrize("chunk", ["5s", "10min"])
def test_a_hauler_first_seen_loaded_after_a_long_gap_gives_no_cycle_for_that_load(trace, synthetic_machines,
                                                                                  chunk: str) -> None:
    """A warm start: the hauler was last seen empty, and reappears a day later already loaded on the haul."""
    yesterday = trace(seed=1)
    yesterday = yesterday[yesterday["ts"] < yesterday["ts"].iloc[0] + pd.Timedelta(seconds=100)]  # empty, driving
    today = trace(seed=2)
    today = today[today["ts"] >= today["ts"].iloc[0] + pd.Timedelta(seconds=260)]  # loaded, about to drive off
    today["ts"] += pd.Timedelta(days=1)
    cycles = _cycles(pd.concat([yesterday, today], ignore_index=True), synthetic_machines, chunk=chunk)
    assert cycles.empty, cycles[["load_start", "loaded_at", "dumped_at", "payload_kg"]]
