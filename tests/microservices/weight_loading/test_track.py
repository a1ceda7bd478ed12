"""Haul cycles from the track (track.py): stops, legs, the payload test, and the same legs whatever the split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microservices.weight_loading import track
from microservices.weight_loading.settings import WeightLoadingSettings
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import SiteConfig

RATED = 28_000.0
NS = track.NS
# a load area around (0, 0) and a crusher 1 km north, in local metres; lon/lat drawn around the origin
LOAD_XY, DUMP_XY, ROAD_XY = (0.0, 0.0), (0.0, 1000.0), (400.0, 500.0)


DRAWN = LocalFrame(59.3, 18.1)  # the frame the places above are in


def site() -> SiteConfig:
    frame = DRAWN

    def square(cx: float, cy: float, half: float) -> list[list[float]]:
        lon, lat = frame.to_lonlat(np.array([cx - half, cx + half, cx + half, cx - half]),
                                   np.array([cy - half, cy - half, cy + half, cy + half]))
        return [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]

    return SiteConfig.model_validate({"zones": [
        {"id": "face", "kind": "load", "name": "Face", "polygon": square(*LOAD_XY, 40)},
        {"id": "crusher", "kind": "crusher", "name": "Crusher", "polygon": square(*DUMP_XY, 30)},
    ]})


def leg_trace(stops: list[tuple[tuple[float, float], float]], payload: str = "absent", seed: int = 0
              ) -> dict[str, np.ndarray]:
    """1-Hz samples standing at each (place, seconds) in turn, driving 60 s at 30 km/h between them.

    ``payload``: 'absent' (no readings), 'stuck' (one value throughout) or 'empty' (healthy noisy readings of
    an empty body).
    """
    rng = np.random.default_rng(seed)
    xs, ys, vs = [], [], []
    for i, ((x, y), seconds) in enumerate(stops):
        n = int(seconds)
        xs.append(np.full(n, x) + rng.normal(0, 1.0, n))
        ys.append(np.full(n, y) + rng.normal(0, 1.0, n))
        vs.append(np.zeros(n))
        if i + 1 < len(stops):
            (x1, y1), _ = stops[i + 1]
            f = np.arange(1, 61) / 61
            xs.append(x + (x1 - x) * f)
            ys.append(y + (y1 - y) * f)
            vs.append(np.full(60, 30.0))
    x, y, v = np.concatenate(xs), np.concatenate(ys), np.concatenate(vs)
    n = len(x)
    t = (1_700_000_000 + np.arange(n)).astype(np.int64) * NS
    p = {"absent": np.full(n, np.nan), "stuck": np.full(n, 21_400.0),
         "empty": np.clip(rng.normal(300, 250, n), 0, None).round(1)}[payload]
    lon, lat = DRAWN.to_lonlat(x, y)
    return {"t": t, "lat": lat, "lon": lon, "v": v, "p": p,
            "fuel": 1000 + np.arange(n) * 0.005, "eh": 5000 + np.arange(n) / 3600}


def run(trace: dict[str, np.ndarray], cuts: list[int] | None = None,
        settings: WeightLoadingSettings | None = None, zones: track.ZoneTest | None = None) -> list[dict]:
    """Feed the trace in pieces (``cuts``: sample indexes) as the service would, carrying the state."""
    s = settings or WeightLoadingSettings()
    zones = zones or track.ZoneTest(site(), s.zone_margin_m)
    bounds = [0, *(cuts or []), len(trace["t"])]
    state: dict = {}
    legs: list[dict] = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        part = {k: v[a:b] for k, v in trace.items()}
        found, state = track.advance(part["t"], part["lat"], part["lon"], part["v"], part["p"], part["fuel"],
                                     part["eh"], state, RATED, zones, s)
        legs += found
    return legs


def at(trace: dict[str, np.ndarray], seconds: float) -> int:
    return int(trace["t"][0] + seconds * NS)


def test_a_load_stop_then_a_crusher_stop_is_one_leg_timed_at_the_drive_offs() -> None:
    trace = leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 45), (ROAD_XY, 200)])
    [leg] = run(trace)
    # standing 30 s, drive 60, load 180 (from 90 to 270), drive 60, tip 45 (330 to 375)
    assert leg["load_start"] == at(trace, 90) and leg["loaded_at"] == leg["haul_start"] == at(trace, 270)
    assert leg["dump_start"] == at(trace, 330) and leg["dumped_at"] == at(trace, 375)
    assert (leg["load_zone"], leg["dump_zone"]) == ("face", "crusher")
    assert abs(leg["fuel1"] - leg["fuel0"] - 285 * 0.005) < 1e-6
    assert track.payload_unusable(leg["evidence"], WeightLoadingSettings()) == "absent"


@pytest.mark.parametrize("cuts", [[1], [100, 101, 102], [269, 272, 331, 376, 400], list(range(7, 700, 13))])
def test_any_split_of_the_samples_gives_the_same_legs(cuts: list[int]) -> None:
    trace = leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 45), (LOAD_XY, 120), (DUMP_XY, 20),
                       (ROAD_XY, 200)], payload="stuck")
    whole = run(trace)
    assert len(whole) == 2
    assert run(trace, cuts) == whole


def test_a_queue_and_the_tip_at_the_crusher_are_one_dump_ending_at_the_last_drive_off() -> None:
    near_dump = (DUMP_XY[0] + 20, DUMP_XY[1] - 20)
    trace = leg_trace([(ROAD_XY, 30), (LOAD_XY, 120), (near_dump, 90), (DUMP_XY, 40), (ROAD_XY, 20),
                       (LOAD_XY, 30)])
    [leg] = run(trace, settings=WeightLoadingSettings(dump_leave_s=90))
    # queue from 270 to 360, 60 s drive (under dump_leave_s), tip from 420 to 460
    assert leg["dump_start"] == at(trace, 270) and leg["dumped_at"] == at(trace, 460)
    [tip_only] = run(trace, settings=WeightLoadingSettings(dump_leave_s=60))  # 60 s apart: two dumps
    assert tip_only["dumped_at"] == at(trace, 360)  # the leg ends at the first; the second has no load


def test_short_stops_and_stops_outside_the_zones_make_no_leg() -> None:
    settings = WeightLoadingSettings()
    short_load = leg_trace([(ROAD_XY, 30), (LOAD_XY, settings.load_stop_min_s - 10), (DUMP_XY, 45),
                            (ROAD_XY, 200)])
    assert run(short_load) == []
    no_dump = leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (ROAD_XY, 45), (ROAD_XY, 200)])
    assert run(no_dump) == []


def test_a_moving_blip_shorter_than_a_drive_off_does_not_split_a_stop() -> None:
    trace = leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 45), (ROAD_XY, 200)])
    trace["v"][150:155] = 6.0  # creeping forward at the loader for 5 s (drive-off needs 8)
    [leg] = run(trace)
    assert leg["load_start"] == at(trace, 90) and leg["haul_start"] == at(trace, 270)


def test_healthy_empty_readings_are_no_reason_to_count_a_leg() -> None:
    settings = WeightLoadingSettings()
    [empty] = run(leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 45), (ROAD_XY, 200)], payload="empty"))
    assert track.payload_unusable(empty["evidence"], settings) is None
    [stuck] = run(leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 45), (ROAD_XY, 200)], payload="stuck"))
    assert track.payload_unusable(stuck["evidence"], settings) == "stuck"
    wild = leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 45), (ROAD_XY, 200)], payload="empty")
    wild["p"] = wild["p"] + 90_000.0  # 3x rated on an empty body: out of range
    [implausible] = run(wild)
    assert track.payload_unusable(implausible["evidence"], settings) == "implausible"


def test_a_stop_beside_a_loading_unit_is_a_load_where_no_load_area_is_drawn() -> None:
    trace = leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 45), (ROAD_XY, 200)])
    crusher_only = site().model_copy(update={"zones": [z for z in site().zones if z.id == "crusher"]})
    zones = track.ZoneTest(crusher_only, 10.0)
    assert not zones.usable and run(trace, zones=zones) == []  # no load area drawn, no loading unit known
    # a loader standing 30 m east of the spot for the whole run: its fixes as the service sums them per minute
    t = trace["t"]
    loader_lon, loader_lat = DRAWN.to_lonlat(LOAD_XY[0] + 30.0, LOAD_XY[1])
    units = track.unit_positions({}, [("WL-9", 0, len(t))], t, np.full(len(t), float(loader_lon)),
                                 np.full(len(t), float(loader_lat)), crusher_only.frame, int(t[0]))
    [leg] = run(trace, zones=zones.with_units(units, 40.0))
    assert leg["load_zone"] == "WL-9" and leg["dump_zone"] == "crusher" and leg["haul_start"] == at(trace, 270)
    assert run(trace, zones=zones.with_units(units, 20.0)) == []  # the loader farther than the radius: not a load
    # the prepared test is shared by every site with this file: a batch's loading units never stay on it
    assert zones.units == {} and zones.unit_radius_m == 0.0 and run(trace, zones=zones) == []


def test_a_site_without_load_or_tipping_zones_cannot_find_legs() -> None:
    assert not track.ZoneTest(SiteConfig(), 10.0).usable
    assert not track.ZoneTest(None, 10.0).usable
    assert track.ZoneTest(site(), 10.0).usable


def test_the_service_finds_unweighed_cycles_the_same_whatever_the_chunks() -> None:
    """One simulated hour, HX-05's payload frozen from minute 15 and HX-06's missing: every closed true cycle
    found (the payload machine's before the fault, the track's after), in 1-min, 7-min and 1-h chunks alike."""
    from evaluation.pipeline import run_in_chunks
    from evaluation.weight_loading import DEFAULT_FAULTS, score_run, simulated
    from microservices.weight_loading import WeightLoading
    from simulators.faults import parse_faults

    faults = parse_faults(DEFAULT_FAULTS + ",payload=stuck:HX-05@900,payload=absent:HX-06")
    telemetry, records, site_config, machines = simulated(4, 1.0, faults=faults)
    tables = [run_in_chunks(WeightLoading(), telemetry, site=site_config, machines=machines, chunk=chunk)["cycles"]
              .sort_values(["machine_id", "dumped_at"]).reset_index(drop=True) for chunk in ("1min", "7min", "1h")]
    alike = [t.astype({"passes": float, "settle_samples": float}).fillna({"band": ""}) for t in tables]  # nulls
    for other in alike[1:]:
        pd.testing.assert_frame_equal(other, alike[0])
    cycles = tables[0]
    unweighed = cycles[cycles["payload_source"] == "none"]
    assert set(unweighed["machine_id"]) == {"HX-05", "HX-06"}
    assert unweighed["payload_kg"].isna().all() and unweighed["band"].isna().all()
    assert (cycles[cycles["machine_id"] == "HX-06"]["payload_source"] == "none").all()
    score = score_run("payload faults", telemetry, records, site_config, machines, chunk="7min")
    assert score.matched == score.true_cycles and score.paired == score.detected
    # the same without the load areas drawn: the loaders' fixes say where loads are
    bare = site_config.model_copy(update={"zones": [z for z in site_config.zones if z.type.value != "load"]})
    score = score_run("no load zones", telemetry, records, bare, machines, chunk="7min")
    assert score.matched == score.true_cycles and score.paired == score.detected


def _loaded_profile(trace: dict[str, np.ndarray], load_s: tuple[float, float], tip_s: tuple[float, float],
                    seed: int = 0) -> np.ndarray:
    """Live readings of a real load cell (100-kg steps, each value held 2 s): empty until ``load_s`` (start, end
    of the passes, s from the first sample), loaded with 25 t until ``tip_s`` (start, end of the tip), then
    empty."""
    rng = np.random.default_rng(seed)
    s = (trace["t"] - trace["t"][0]) / NS
    true = np.interp(s, [0, load_s[0], load_s[1], tip_s[0], tip_s[1], s[-1] + 1],
                     [0, 0, 25_000, 25_000, 0, 0])
    noisy = true + rng.normal(0, 150, len(s))
    held = noisy[(np.arange(len(s)) // 2) * 2]  # the weighing updates every 2 s
    return np.clip(np.round(held / 100) * 100, 0, None)


def test_a_healthy_quantised_load_cell_that_repeats_neighbouring_values_is_not_stuck() -> None:
    trace = leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 45), (ROAD_XY, 200)])
    trace["p"] = _loaded_profile(trace, (100, 250), (335, 365))
    [leg] = run(trace)
    pairs, changed = leg["evidence"][0][2], leg["evidence"][0][3]
    assert changed < 0.5 * pairs  # more than half the neighbours repeat, as on the field trial's trucks
    assert track.payload_unusable(leg["evidence"], WeightLoadingSettings()) is None


def test_a_loaded_wait_in_a_tipping_zone_is_not_the_dump_when_the_payload_did_not_drop() -> None:
    """The field trial: a 3.5-minute loaded wait in a stockpile zone on the way; the tip comes later."""
    stops = [(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 210), (ROAD_XY, 60), (DUMP_XY, 45), (ROAD_XY, 200)]
    trace = leg_trace(stops)
    # stops start at 0, 90, 330, 600, 720 s; the tip is in the second stop at the crusher
    trace["p"] = _loaded_profile(trace, (100, 250), (730, 760))
    [leg] = run(trace)
    assert leg["dump_start"] == at(trace, 720) and leg["dumped_at"] == at(trace, 765)
    # without live readings (absent) the zone decides: the wait is the dump, as before
    trace["p"] = np.full(len(trace["t"]), np.nan)
    legs = run(trace)
    assert legs[0]["dump_start"] == at(trace, 330)


@pytest.mark.parametrize("cuts", [[], [200], [250, 251], [320]])
def test_a_leg_is_never_stitched_across_a_long_gap(cuts: list[int]) -> None:
    """A shift ends while the hauler stands at the loader; the next samples come a day later: that load's leg is
    not completed by the next day's first dump (the track's twin of the demo's 0-kg cycle), while a whole leg
    after the gap is found as usual."""
    trace = leg_trace([(ROAD_XY, 30), (LOAD_XY, 180), (DUMP_XY, 45), (ROAD_XY, 200), (LOAD_XY, 180), (DUMP_XY, 45),
                       (ROAD_XY, 200)])
    cut = 200  # standing at the loader, 110 s into the first load stop
    trace["t"][cut:] += 86_400 * NS
    legs = run(trace, cuts)
    assert len(legs) == 1
    assert legs[0]["load_start"] > trace["t"][cut] and legs[0]["dumped_at"] > legs[0]["load_start"]



@pytest.mark.parametrize("chunk", ["3min", "10min"])
def test_a_short_loaded_wait_with_a_steady_reading_is_one_weighed_cycle(chunk: str) -> None:
    """The demo quarry at 1 Hz with a real load cell and recorded habits: HX-01 waited 23 s loaded in a tipping
    zone, where its standing truck's quantised cell read one steady value; the track took that for a cell stuck
    across a dump and counted a second, unweighed cycle beside the weighed one (precision 0.964). The payload
    machine saw that load and its tip later: one cycle, whether the tip falls in the wait's batch or a later one."""
    from evaluation.weight_loading import DEFAULT_FAULTS, score_run, simulated
    from simulators.faults import parse_faults
    from simulators.machines import BEHAVIOURS
    from simulators.sensors import fleet_sensors

    telemetry, records, site_config, machines = simulated(
        1, 1.0, hz=1, faults=parse_faults(DEFAULT_FAULTS), sensors=fleet_sensors("rtk", "real"),
        behaviour=BEHAVIOURS["recorded"], site="demo_quarry")
    score = score_run("loaded wait", telemetry, records, site_config, machines, chunk=chunk)
    assert score.paired == score.detected and score.matched == score.true_cycles, score
