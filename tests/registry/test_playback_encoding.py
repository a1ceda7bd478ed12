"""The playback answer's track encoding: delta-encoded integer columns that decode to the stored samples, with the
interior of standing-still runs dropped, and the period's bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from registry.playback import MAX_POINTS_PER_MACHINE, encode_tracks, playback_step
from sitepulse.errors import InvalidInput

T0 = datetime(2026, 5, 1, 6, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def _track(machine: str, lats: list[float], states: list[str]) -> pd.DataFrame:
    n = len(lats)
    return pd.DataFrame({"machine_id": [machine] * n, "t_ms": T0_MS + np.arange(n) * 5000,
                         "lat": lats, "lon": [18.0 + i * 1e-5 for i in range(n)], "state": states})


def _decode(machine: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.cumsum(machine[k]) for k in ("t", "lat", "lon"))


def test_moving_samples_round_trip_to_a_tenth_of_a_metre() -> None:
    track = _track("H1", [59.0 + i * 3e-5 for i in range(6)], ["moving"] * 6)
    (h1,) = encode_tracks(track, T0_MS)
    t, lat, lon = _decode(h1)
    assert t.tolist() == [0, 5, 10, 15, 20, 25] and h1["s"] == "mmmmmm"
    assert np.allclose(lat / 1e6, track["lat"], atol=1e-6) and np.allclose(lon / 1e6, track["lon"], atol=1e-6)
    assert max(abs(x) for x in h1["lat"][1:]) == 30  # deltas, not absolute microdegrees


def test_a_standing_run_keeps_only_its_ends_and_state_changes() -> None:
    still = pd.DataFrame({"machine_id": ["L1"] * 8, "t_ms": T0_MS + np.arange(8) * 5000, "lat": [59.0] * 8,
                          "lon": [18.0] * 8, "state": ["idle"] * 4 + ["off"] * 4})
    moving = _track("H2", [59.0 + i * 3e-5 for i in range(3)], ["moving"] * 3)
    l1, h2 = encode_tracks(pd.concat([still, moving], ignore_index=True), T0_MS)
    assert (l1["id"], h2["id"]) == ("L1", "H2")
    assert np.cumsum(l1["t"]).tolist() == [0, 15, 20, 35] and l1["s"] == "iioo"
    assert len(h2["t"]) == 3 and h2["t"][0] == 0  # each machine's columns start from zero again


def test_the_period_is_bounded_and_long_ones_are_thinned() -> None:
    assert playback_step(T0, T0 + timedelta(hours=12)) == 5
    assert playback_step(T0, T0 + timedelta(hours=24)) == np.ceil(86400 / MAX_POINTS_PER_MACHINE)
    with pytest.raises(InvalidInput, match="at most 24 hours"):
        playback_step(T0, T0 + timedelta(hours=25))
    with pytest.raises(InvalidInput, match="after"):
        playback_step(T0, T0)


def test_positions_not_known_are_left_out() -> None:
    track = _track("H3", [59.0, float("nan"), 59.0002], ["moving"] * 3)
    (h3,) = encode_tracks(track, T0_MS)
    assert np.cumsum(h3["t"]).tolist() == [0, 10] and h3["s"] == "mm"
    assert encode_tracks(track.iloc[1:2], T0_MS) == []
