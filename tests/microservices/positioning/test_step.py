"""Unit tests of ``detect.step`` on a hand-built drive through one zone: what becomes final, what is written, what is
carried, and that two steps give what one step gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microservices.positioning import detect
from microservices.positioning.layout import Layout
from microservices.positioning.settings import PositioningSettings
from microservices.positioning.track import Setup, track_of
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import parse_site

START = pd.Timestamp("2026-03-02T06:00:00Z")
T0 = int(START.value // 1_000_000)
SETTINGS = PositioningSettings()  # lookahead 10 s, min dwell 5 s, border margin 3 m, track every 5 s
SITE = parse_site("""
name: step
timezone: UTC
zones:
  - {id: pit, type: load, polygon: [[18.0, 59.0], [18.0007, 59.0], [18.0007, 59.00036], [18.0, 59.00036]]}
""", source="step.yaml")


def drive(seconds: int = 80, jump_at: int = 40) -> pd.DataFrame:
    """One hauler at 5 m/s due east along the middle of the 40.1 m wide zone, crossing its border at 20.5 s and
    28.5 s; one 30 m GNSS jump."""
    minx, miny, _, maxy = Layout(SITE).index.polygons[0].bounds
    t = np.arange(seconds, dtype=float)
    x = minx - 102.5 + 5.0 * t  # inside the polygon from t = 21 s (x = minx + 2.5) to t = 28 s (+ 37.5)
    y = np.full(seconds, (miny + maxy) / 2)
    y[jump_at] += 30.0
    lon, lat = SITE.frame.to_lonlat(x, y)
    telemetry = pd.DataFrame({"site_id": "s", "machine_id": "H1", "ts": START + pd.to_timedelta(t, unit="s"),
                              "lat": lat, "lon": lon, "speed_kmh": 18.0, "heading_deg": 90.0, "engine_on": True})
    return telemetry


def setup(frame: LocalFrame | None = None) -> Setup:
    return Setup(SETTINGS, Layout(SITE), frame or SITE.frame, SITE)


def one_step(telemetry: pd.DataFrame, machines: dict) -> tuple[dict[str, pd.DataFrame], list, dict]:
    track = track_of(telemetry, machines, SITE.frame)
    out, machines = detect.step(track, machines, setup())
    return out.frames(), out.alerts, machines


@pytest.fixture(scope="module")
def whole() -> tuple[dict[str, pd.DataFrame], list, dict]:
    return one_step(drive(), {})


def test_only_samples_a_lookahead_old_are_final(whole) -> None:
    tables, _, machines = whole
    # newest sample 79 s, lookahead 7.5 + 2.5 s: samples up to 69 s are final, one track row per 5 s of them
    assert machines["H1"]["last"]["t"] == T0 + 69_000
    track = tables["track"]
    assert (track["ts"] - START).dt.total_seconds().tolist() == [float(s) for s in range(0, 70, 5)]
    row = track.set_index((track["ts"] - START).dt.total_seconds())
    assert bool(row.loc[40.0, "jump"]) and bool(row.loc[40.0, "carried"])  # the jump is rejected, the fix carried
    assert not row.drop(index=40.0)[["jump", "carried"]].any().any()
    assert row.loc[40.0, "y_m"] == pytest.approx(row.loc[35.0, "y_m"], abs=0.01)


def test_zone_entry_and_visit_from_the_hand_built_drive(whole) -> None:
    tables, alerts, _ = whole
    entries, visits = tables["zone_entries"], tables["zone_visits"]
    assert entries[["machine_id", "zone", "zone_type"]].values.tolist() == [["H1", "pit", "load"]]
    assert entries["entered_at"].iloc[0] == START + pd.Timedelta(seconds=21)
    # left at the first sample after the last one inside (29 s: 2.4 m past the border, inside the 3 m margin)
    assert visits["left_at"].iloc[0] == START + pd.Timedelta(seconds=29)
    assert visits["dwell_s"].iloc[0] == pytest.approx(8.0)
    assert alerts == []  # a load zone: no restricted-entry alert


def test_activity_sums_time_and_distance_exactly(whole) -> None:
    activity = whole[0]["activity"]
    assert activity["moving_ms"].sum() == 69_000  # 69 intervals between the 70 final samples, all moving
    assert activity["idle_ms"].sum() == 0 and activity["off_ms"].sum() == 0
    assert activity["distance_mm"].sum() == 345_000  # 18 km/h as reported for 69 s
    assert activity["load_ms"].sum() == 8_000  # intervals starting at 21..28 s, inside the zone
    assert set(activity["shift"]) == {"day"}  # 06:00 UTC: the site file's default day shift


def test_state_keeps_the_cleaning_context_and_the_open_zone_series(whole) -> None:
    machine = whole[2]["H1"]
    raw_t = (np.array(machine["raw"]["t"]) - T0) // 1000
    # samples from 2 lookaheads before the newest (59 s) and the one before it are still needed
    assert raw_t.tolist() == list(range(58, 80))
    assert machine["bucket"] == (T0 + 69_000) // 5000
    assert machine["zones"] == {} and machine["speeding"] is None


def test_two_steps_give_what_one_step_gives(whole) -> None:
    telemetry = drive()
    cut = START + pd.Timedelta(seconds=45)
    first, first_alerts, machines = one_step(telemetry[telemetry["ts"] < cut], {})
    second, second_alerts, machines = one_step(telemetry[telemetry["ts"] >= cut], machines)
    tables, alerts, carried = whole
    for table, rows in tables.items():
        parts = [p[table] for p in (first, second) if table in p]
        if table == "activity":  # a minute split by the steps has two rows: their sums are the same
            joined = pd.concat(parts).groupby(["machine_id", "minute"], as_index=False).sum(numeric_only=True)
            pd.testing.assert_frame_equal(joined, rows.groupby(["machine_id", "minute"], as_index=False)
                                          .sum(numeric_only=True))
        else:
            pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), rows)
    assert first_alerts + second_alerts == alerts
    assert machines == carried


def test_without_a_layout_only_the_track_and_activity_are_written() -> None:
    telemetry = drive()
    frame = LocalFrame(59.0, 18.0)
    out, machines = detect.step(track_of(telemetry, {}, frame), {}, Setup(SETTINGS, None, frame, None))
    tables = out.frames()
    assert set(tables) == {"track", "activity"}
    assert set(tables["activity"]["shift"]) == {""}  # no site file, no shifts
    assert "zones" not in machines["H1"]
