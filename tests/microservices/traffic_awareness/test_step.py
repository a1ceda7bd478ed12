"""Unit tests of ``detect.step`` on hand-built tracks: a head-on encounter, the frontier a silent machine no longer
holds back, what a step carries, and that two steps give what one step gives (an episode open across them)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from microservices.traffic_awareness import detect
from microservices.traffic_awareness.settings import TrafficSettings
from microservices.traffic_awareness.track import Setup, track_of
from sitepulse.geo import LocalFrame

START = pd.Timestamp("2026-03-02T06:00:00Z")
T0 = int(START.value // 1_000_000)
FRAME = LocalFrame(59.0, 18.0)
SETTINGS = TrafficSettings()
SETUP = Setup(SETTINGS, None, FRAME, None, {"A": "hauler", "B": "hauler"})


def machine(name: str, x0: float, vx: float, seconds: int = 40) -> pd.DataFrame:
    """A machine on the x axis at constant velocity, sampled at 1 Hz."""
    t = np.arange(seconds, dtype=float)
    lon, lat = FRAME.to_lonlat(x0 + vx * t, np.zeros(seconds))
    return pd.DataFrame({"site_id": "s", "machine_id": name, "ts": START + pd.to_timedelta(t, unit="s"), "lat": lat,
                         "lon": lon, "speed_kmh": abs(vx) * 3.6, "heading_deg": 90.0 if vx > 0 else 270.0})


def head_on() -> pd.DataFrame:
    """A and B 200 m apart closing at 10 m/s: they meet at 20 s (10 m apart at 19 s and 21 s)."""
    return pd.concat([machine("A", -100.0, 5.0), machine("B", 100.0, -5.0)], ignore_index=True)


def run(telemetry: pd.DataFrame, state: dict) -> tuple[dict[str, pd.DataFrame], list, dict, pd.Timestamp]:
    out, state = detect.step(track_of(telemetry, state["tails"], FRAME), state, SETUP)
    return out.frames(), out.alerts, state, out.final_until


@pytest.fixture(scope="module")
def whole() -> tuple[dict[str, pd.DataFrame], list, dict, pd.Timestamp]:
    return run(head_on(), detect.new_state())


def test_a_head_on_pass_is_one_critical_encounter_with_one_alert(whole) -> None:
    tables, alerts, _, _ = whole
    encounters = tables["encounters"]
    assert encounters[["machine_a", "machine_b", "level"]].values.tolist() == [["A", "B", "critical"]]
    row = encounters.iloc[0]
    assert row["at"] == START + pd.Timedelta(seconds=20)
    assert row["min_distance_m"] == pytest.approx(0.0, abs=0.01)
    # from 19 s (10 m apart, 0.4 s to collision) to 20 s: at 21 s they separate, no longer on a collision course
    assert (row["started_at"], row["ended_at"]) == (START + pd.Timedelta(seconds=19), START + pd.Timedelta(seconds=20))
    assert row["min_ttc_s"] == 0.0  # within the collision radius at the closest moment
    assert [a.key for a in alerts] == [f"encounter:A:B:{(START + pd.Timedelta(seconds=19)).isoformat()}:critical"]
    assert alerts[0].level == "critical"


def test_results_are_final_up_to_the_newest_time_every_machine_passed(whole) -> None:
    _, _, state, final_until = whole
    assert final_until == START + pd.Timedelta(seconds=39)
    assert state["done"] == T0 + 39_000 and state["open"] == []
    for name in ("A", "B"):  # each tail: the samples of the causal windows before the newest
        t = np.array(state["tails"][name]["t"])
        assert t.max() == T0 + 39_000 and t.min() >= T0 + 39_000 - SETTINGS.lookback_ms
        assert np.isfinite(state["tails"][name]["fx"]).all()


def test_an_encounter_open_at_a_step_boundary_is_finished_by_the_next(whole) -> None:
    """Split at 22 s: the episode (last moment 20 s, merge window 3 s) is still open after the first step, carried
    in the state, and the second step (no close moment of its own) writes it: the same rows and alerts as one step."""
    telemetry = head_on()
    cut = START + pd.Timedelta(seconds=22)
    first, first_alerts, state, _ = run(telemetry[telemetry["ts"] < cut], detect.new_state())
    assert "encounters" not in first and len(state["open"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' FutureWarning on concatenating an empty frame included
        second, second_alerts, state, _ = run(telemetry[telemetry["ts"] >= cut], state)
    pd.testing.assert_frame_equal(second["encounters"], whole[0]["encounters"])
    assert [a.key for a in first_alerts + second_alerts] == [a.key for a in whole[1]]
    assert state["open"] == [] and state["done"] == whole[2]["done"]


def test_a_silent_machine_stops_holding_the_frontier_back_but_not_inside_its_reach() -> None:
    group = np.array([0, 1, 2])
    at = np.array([100_000, 84_000, 86_000])  # machine 1 silent (16 s behind the newest), 2 still reporting
    assert detect.frontier(group, at, 3, SETTINGS) == 84_000  # 86 s is within 1's interpolation reach (5 s)
    at = np.array([100_000, 80_000, 86_000])
    assert detect.frontier(group, at, 3, SETTINGS) == 86_000
    at = np.array([100_000, 80_000, 96_000])
    assert detect.frontier(group, at, 3, SETTINGS) == 96_000


def test_a_machine_without_new_samples_keeps_its_tail() -> None:
    """Only B reports in the second step: A's tail comes back, and A (silent by then) no longer holds B back."""
    telemetry = head_on()
    cut = START + pd.Timedelta(seconds=30)
    _, _, state, _ = run(telemetry[telemetry["ts"] < cut], detect.new_state())
    later = machine("B", 100.0, -5.0, seconds=60)
    _, _, after, final_until = run(later[later["ts"] >= cut], state)
    assert after["tails"]["A"] == state["tails"]["A"]
    assert final_until == START + pd.Timedelta(seconds=59)
