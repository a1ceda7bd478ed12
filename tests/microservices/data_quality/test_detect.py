"""The health check on small made-up fleets (not the simulator): each fault found, healthy twins clean, any
split of the telemetry gives the same findings."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from evaluation.pipeline import run_in_chunks
from microservices.data_quality import DataQuality
from microservices.data_quality.detect import fleet_ahead_s, judge_clock, last_increase
from microservices.data_quality.settings import DataQualitySettings
from microservices.sdk import Batch
from sitepulse.geo import LocalFrame

START = datetime(2026, 5, 4, 7, 0, tzinfo=UTC)
FRAME = LocalFrame(47.0, 8.0)


def drive(machine: str, seconds: int = 300, seed: int = 0, speed_kmh: float = 25.0) -> pd.DataFrame:
    """A truck lapping a 150 x 80 m loop at ``speed_kmh`` with 0.4 m of GNSS noise, a live compass and meters."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds, dtype=float)
    v = speed_kmh / 3.6
    perimeter = 2 * (150 + 80)
    s = (v * t) % perimeter
    x = np.select([s < 150, s < 230, s < 380], [s, 150.0, 150 - (s - 230)], 0.0)
    y = np.select([s < 150, s < 230, s < 380], [0.0, s - 150, 80.0], 80 - (s - 380))
    heading = np.select([s < 150, s < 230, s < 380], [90.0, 0.0, 270.0], 180.0)
    lon, lat = FRAME.to_lonlat(x + rng.normal(0, 0.4, seconds), y + rng.normal(0, 0.4, seconds))
    ts = pd.to_datetime(START) + pd.to_timedelta(t, unit="s")
    return pd.DataFrame({
        "site_id": "made-up", "machine_id": machine, "ts": ts, "seq": np.arange(seconds),
        "received_at": ts + pd.Timedelta(milliseconds=300), "lat": lat, "lon": lon,
        "speed_kmh": np.round(speed_kmh + rng.normal(0, 0.5, seconds), 1),
        "heading_deg": np.round((heading + rng.normal(0, 2, seconds)) % 360, 1),
        "payload_kg": np.round(np.abs(rng.normal(0, 300, seconds)), 1),
        "fuel_used_l": np.round(5000 + 0.012 * t, 3), "engine_hours": np.round(800 + t / 3600, 4),
        "engine_on": True})


MACHINES = pd.DataFrame([["ok-1", "hauler", "Bell B45E", 41_000.0], ["bad-1", "hauler", "Bell B45E", 41_000.0]],
                        columns=["machine_id", "kind", "model", "rated_payload_kg"])


def findings(bad: pd.DataFrame, chunk: str = "1min") -> pd.DataFrame:
    telemetry = pd.concat([drive("ok-1", seed=1), bad], ignore_index=True)
    telemetry = telemetry.sort_values(["machine_id", "ts"], kind="stable").reset_index(drop=True)
    tables = run_in_chunks(DataQuality(), telemetry, chunk=chunk, machines=MACHINES)
    events = tables.get("sensor_events", pd.DataFrame(columns=["machine_id", "sensor", "status", "since"]))
    assert events[events["machine_id"] == "ok-1"].empty, events[events["machine_id"] == "ok-1"]
    return events[events["machine_id"] == "bad-1"]


def faulty(change) -> pd.DataFrame:
    frame = drive("bad-1", seed=2)
    late = frame["ts"] >= frame["ts"].iloc[0] + pd.Timedelta(seconds=60)
    change(frame, late)
    return frame


def _set(column, value):
    def change(frame, late):
        frame.loc[late, column] = value
    return change


CASES = {
    "heading stuck at 0": (_set("heading_deg", 0.0), "heading", "stuck"),
    "heading absent": (_set("heading_deg", np.nan), "heading", "absent"),
    "heading 180 off": (lambda f, late: f.__setitem__("heading_deg", np.where(late, (f["heading_deg"] + 180) % 360,
                                                                                f["heading_deg"])),
                        "heading", "offset"),
    "speed stuck at 0": (_set("speed_kmh", 0.0), "speed", "stuck"),
    "speed reads 8 km/h low": (lambda f, late: f.__setitem__("speed_kmh", np.where(late, f["speed_kmh"] - 8,
                                                                                     f["speed_kmh"])),
                               "speed", "offset"),
    "position absent": (lambda f, late: f.loc.__setitem__((late, ["lat", "lon"]), np.nan), "position", "absent"),
    "payload 3 t when empty": (lambda f, late: f.__setitem__("payload_kg", np.where(late, f["payload_kg"] + 3000,
                                                                                      f["payload_kg"])),
                               "payload", "offset"),
    "fuel counter frozen": (lambda f, late: f.__setitem__("fuel_used_l", np.where(late, f["fuel_used_l"].iloc[60],
                                                                                    f["fuel_used_l"])),
                            "fuel", "stuck"),
    "engine hours jump back": (lambda f, late: f.__setitem__("engine_hours", np.where(
        late & (np.arange(len(f)) % 40 == 0), f["engine_hours"] - 50, f["engine_hours"])), "hours", "implausible"),
    "clock 40 s ahead": (lambda f, late: f.__setitem__("ts", np.where(late, f["ts"] + pd.Timedelta(seconds=40),
                                                                      f["ts"])), "clock", "skew"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_fault_is_found_on_a_fleet_it_was_not_tuned_on(case: str) -> None:
    change, sensor, status = CASES[case]
    events = findings(faulty(change))
    hits = events[(events["sensor"] == sensor) & (events["status"] == status)]
    assert not hits.empty, events[["sensor", "status", "evidence"]].to_dict("records")
    delay = (pd.Timestamp(hits["detected_at"].iloc[0]) - (pd.Timestamp(START) + pd.Timedelta(seconds=60)))
    assert delay <= pd.Timedelta(minutes=2), delay
    assert set(events["sensor"]) == {sensor}, events[["sensor", "status", "evidence"]].to_dict("records")


def test_any_split_of_the_telemetry_gives_the_same_findings() -> None:
    bad = faulty(_set("heading_deg", 0.0))
    columns = ["machine_id", "sensor", "status", "since", "detected_at", "value"]
    one = findings(bad, "1min")[columns].reset_index(drop=True)
    assert not one.empty
    pd.testing.assert_frame_equal(findings(bad, "7min")[columns].reset_index(drop=True), one)
    pd.testing.assert_frame_equal(findings(bad, "20s")[columns].reset_index(drop=True), one)


def test_fleet_ahead_compares_each_sample_with_the_fleet_arriving_with_it() -> None:
    t = np.array([0, 1000, 2000, 0, 1000, 2000, 30_000, 31_000, 32_000]) + 10_000_000
    received = np.array([0, 1000, 2000, 0, 1000, 2000, 0, 1000, 2000]) + 10_060_000  # the fleet lags 60 s
    ahead = fleet_ahead_s(np.array(list("aaabbbccc"), object), t, received, neighbours=3)
    assert np.allclose(ahead[:6], 0.0) and np.allclose(ahead[6:], 30.0)


def test_last_increase_carries_across_groups_and_batches() -> None:
    group = np.array([0, 0, 0, 1, 1])
    t = np.array([10, 20, 30, 10, 20])
    increased = np.array([False, True, False, False, False])
    carried = np.array([5, 5, 5, -1, -1])
    assert last_increase(group, t, increased, carried).tolist() == [5, 20, 20, -1, -1]


def _spikes(at_s: list[int], metres: float = 100.0):
    def change(frame, late):
        rows = np.isin(np.arange(len(frame)), at_s)
        x, y = FRAME.to_xy(frame.loc[rows, "lon"].to_numpy(), frame.loc[rows, "lat"].to_numpy())
        frame.loc[rows, "lon"], frame.loc[rows, "lat"] = FRAME.to_lonlat(x + metres, y)
    return change


def test_multipath_spikes_open_a_finding_in_the_bin_that_counts_enough_of_them() -> None:
    # one-sample spikes 100 m off at 65 s and 90 s: the out-and-back edges of the second make four in 80 s
    events = findings(faulty(_spikes([65, 90])))
    hits = events[(events["sensor"] == "position") & (events["status"] == "implausible")]
    assert not hits.empty, events[["sensor", "status", "evidence"]].to_dict("records")
    # the count is over a window of bins already: no second bin is waited for (20-s bins from 0 s)
    assert pd.Timestamp(hits["detected_at"].iloc[0]) == pd.Timestamp(START) + pd.Timedelta(seconds=100)


def test_one_jump_is_not_a_multipath_antenna() -> None:
    assert findings(faulty(_spikes([65]))).empty  # a healthy receiver jumps now and then


def stop_and_go(machine: str, seed: int, moving_s: int = 8, standing_s: int = 12, seconds: int = 420
                ) -> pd.DataFrame:
    """The lap driven in bursts of ``moving_s`` seconds between stops of ``standing_s`` (a hauler creeping in a
    queue): standing, it repeats its last fix; payload and meters stay live."""
    frame = drive(machine, seconds=seconds, seed=seed)
    burst = (np.arange(seconds) % (moving_s + standing_s)) < moving_s
    where = np.clip(np.cumsum(burst) - 1, 0, None)  # the driving sample each second shows
    out = frame.copy()
    for column in ("lat", "lon", "speed_kmh", "heading_deg"):
        out[column] = frame[column].to_numpy()[where]
    out.loc[~burst, "speed_kmh"] = 0.0
    return out


@pytest.mark.parametrize(("column", "sensor"), [("speed_kmh", "speed"), ("payload_kg", "payload")])
def test_a_frozen_reading_is_found_on_a_machine_that_only_drives_in_short_bursts(column: str, sensor: str) -> None:
    bad = stop_and_go("bad-1", seed=2)
    late = bad["ts"] >= bad["ts"].iloc[0] + pd.Timedelta(seconds=60)
    bad.loc[late, column] = bad.loc[late, column].iloc[0]
    telemetry = pd.concat([stop_and_go("ok-1", seed=1), bad], ignore_index=True)
    telemetry = telemetry.sort_values(["machine_id", "ts"], kind="stable").reset_index(drop=True)
    events = run_in_chunks(DataQuality(), telemetry, chunk="1min", machines=MACHINES)["sensor_events"]
    assert events[events["machine_id"] == "ok-1"].empty, events[events["machine_id"] == "ok-1"]
    hits = events[(events["machine_id"] == "bad-1") & (events["sensor"] == sensor) & (events["status"] == "stuck")]
    assert not hits.empty, events
    # no 20-s bin holds min_samples moving samples (8 s of driving in every 20); the window of 4 bins does. A payload
    # is frozen only once unchanged for payload_frozen_s while driving (repeats between neighbours are normal)
    found_after = (pd.Timestamp(hits["detected_at"].iloc[0]) - bad["ts"].iloc[0]).total_seconds() - 60
    shows = DataQualitySettings().payload_frozen_s if sensor == "payload" else 0.0
    assert 0 < found_after - shows <= 120, found_after


def _quantised_cell(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A real load cell: a loaded body's reading in 100-kg steps with a little bounce while driving, so about half
    of neighbouring samples repeat exactly; -99 when the cell drops out now and then."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    bounce = np.convolve(rng.normal(0, 60, len(out)), np.ones(3) / 3, mode="same")
    out["payload_kg"] = np.round((30_000 + bounce) / 100) * 100
    out.loc[rng.random(len(out)) < 0.02, "payload_kg"] = -99.0
    return out


def test_a_quantised_load_cell_repeating_values_is_not_stuck() -> None:
    bad = _quantised_cell(drive("bad-1", seed=2), seed=3)
    repeats = (bad["payload_kg"].diff() == 0).mean()
    assert 0.3 < repeats < 0.8  # as the real quarry trucks' cells: about half
    events = findings(bad)
    assert events[events["sensor"] == "payload"].empty, events


def test_negative_sentinels_are_absent_readings_not_a_stuck_cell() -> None:
    bad = drive("bad-1", seed=2)
    late = bad["ts"] >= bad["ts"].iloc[0] + pd.Timedelta(seconds=60)
    bad.loc[late, "payload_kg"] = -99.0
    events = findings(bad)
    payload = events[events["sensor"] == "payload"]
    assert set(payload["status"]) == {"absent"}, payload


def test_a_history_backlog_caught_up_by_ingest_is_no_clock_drift() -> None:
    """Demo defect: while ingest caught up with the history backlog, healthy machines' clocks were called +21 s
    ahead. Four of six machines' first minutes arrive in a burst (ingest draining a queue 4x faster than real
    time until it is live); the other two arrive live all along. Late deliveries say nothing about clocks."""
    machines = [f"m-{i}" for i in range(6)]
    frames = []
    for i, machine in enumerate(machines):
        frame = drive(machine, seconds=480, seed=10 + i)
        if i < 4:
            since = (frame["ts"] - frame["ts"].iloc[0]).dt.total_seconds().to_numpy()
            queued = frame["ts"].iloc[0] + pd.to_timedelta(150 + since / 4, unit="s")
            frame["received_at"] = np.maximum(frame["received_at"], queued)
        frames.append(frame)
    telemetry = pd.concat(frames, ignore_index=True)
    registry = pd.DataFrame([[m, "hauler", "Bell B45E", 41_000.0] for m in machines], columns=MACHINES.columns)
    # as the runner feeds a live service: each batch what arrived in the last 10 s (history and live mixed)
    service, state, events = DataQuality(), {}, []
    for _, part in telemetry.groupby(telemetry["received_at"].dt.floor("10s"), sort=True):
        part = part.sort_values(["machine_id", "ts"], kind="stable").reset_index(drop=True)
        batch = Batch(site_id="made-up", telemetry=part, site=None, machines=registry,
                      read=lambda q, p=None: pd.DataFrame())
        outputs, state = service.process(batch, state, service.Settings())
        events += [frame for table, frame in outputs.frames().items() if table == "sensor_events"]
    found = pd.concat(events) if events else pd.DataFrame()
    assert found.empty, found[["machine_id", "sensor", "status", "evidence"]].to_dict("records")



@pytest.mark.parametrize(("queued", "verdict"), [(0.0, "skew"), (1.0, "ok")])
def test_a_clock_drift_is_fitted_over_live_arrivals_only(queued: float, verdict: str) -> None:
    """CI defect: ten minutes published as fast as the broker takes them made a healthy loader's clock "drift
    +58 s/h (now -1.9 s)". A queue drains about 60x faster than its samples were taken, so each wall millisecond
    of delivery jitter reads as 60 ms of clock. The same rise of the lead, 1 s a minute, is a drift when the bins
    arrived live and nothing when they were queued (a queued clock is judged by its lead alone)."""
    settings = DataQualitySettings()
    ring = [[i * 20_000.0 + 10_000, -2.0 + i / 3, queued] for i in range(settings.drift_bins)]
    assert judge_clock(ring, settings).status == verdict
    assert judge_clock([[*r[:2]] for r in ring], settings).status == "skew"  # a state written before: live
