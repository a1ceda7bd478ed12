"""Receiver classes, real load cells, sample rates and the second site: the simulator as varied as real fleets."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import orjson
import pytest

from simulators.cli import _behaviour, _sensors
from simulators.engine import Simulation
from simulators.machines import BEHAVIOURS
from simulators.sensors import RECEIVERS, MixedFleet, SensorConfig, SensorModel, fleet_sensors
from simulators.site import load_site, shipped_sites
from simulators.truth import TruthSettings
from sitepulse.errors import SitePulseError


def _standing_errors(config: SensorConfig, samples: int = 20_000, dt: float = 1.0, seed: int = 3) -> np.ndarray:
    model = SensorModel(np.random.default_rng(seed), config, dt, 28_000, "hauler")
    return np.array([model.read(0.0, 0.0, 0.0, 0.0, 0.0, False)[:2] for _ in range(samples)])


@pytest.mark.parametrize("name", list(RECEIVERS))
def test_a_receiver_class_has_its_noise_per_axis(name: str) -> None:
    config = SensorConfig.receiver(name, gnss_jump_rate=0.0)
    errors = _standing_errors(config)
    expected = {"rtk": 0.02, "sbas": 0.5, "standalone": math.hypot(1.5, 2.5)}[name]
    assert config.gnss_noise_m == pytest.approx(expected, rel=0.05)
    for axis in (0, 1):
        assert errors[:, axis].std() == pytest.approx(expected, rel=0.15)
    # the white part shows between neighbouring samples; the drift hardly moves in one second
    phi = math.exp(-1.0 / config.gnss_tau_s)
    step = math.sqrt(2 * (config.gnss_white_m ** 2 + config.gnss_sigma_m ** 2 * (1 - phi)))
    assert np.diff(errors[:, 0]).std() == pytest.approx(step, rel=0.1)


def test_standalone_white_noise_is_chosen_and_names_are_checked() -> None:
    config = SensorConfig.receiver("standalone", white_m=1.0)
    assert (config.gnss_white_m, config.gnss_class) == (1.0, "standalone")
    quiet = SensorConfig.receiver("standalone", white_m=1.0, gnss_jump_rate=0.0)
    assert _standing_errors(quiet)[:, 0].std() == pytest.approx(math.hypot(1.5, 1.0), rel=0.15)
    with pytest.raises(SitePulseError, match="receiver 'gps'"):
        SensorConfig.receiver("gps")
    with pytest.raises(SitePulseError, match="load cell 'perfect'"):
        fleet_sensors("rtk", "perfect")
    with pytest.raises(SitePulseError, match="--receiver 'gps'"):
        _sensors("gps", None, None)
    with pytest.raises(SitePulseError, match="--gnss-white"):
        _sensors("mixed", 2.0, None)
    with pytest.raises(SitePulseError, match="--behaviour 'lazy'"):
        _behaviour("lazy", False)
    assert _sensors(None, None, None) is None  # the historical default stays the default
    assert SensorConfig() == SensorConfig(gnss_sigma_m=1.5, gnss_white_m=0.3, gnss_jump_rate=0.001)


def test_jumps_per_hour_do_not_depend_on_the_sample_rate() -> None:
    counts = []
    for dt in (2.0, 1.0, 0.1):
        model = SensorModel(np.random.default_rng(5), SensorConfig(gnss_jump_rate=0.01), dt, 28_000, "hauler")
        for _ in range(int(3 * 3600 / dt)):
            model.read(0.0, 0.0, 0.0, 0.0, 0.0, False)
        counts.append(model.jumps)
    assert all(70 <= c <= 150 for c in counts), counts  # 108 expected in 3 hours at each rate


def test_a_mixed_fleet_draws_a_class_per_machine() -> None:
    sim = Simulation(load_site(), duration_s=0, seed=4, haulers=40, sensors="mixed")
    list(sim)
    machines = [r for r in sim.truth_records() if r["type"] == "machine"]
    classes = Counter(r["receiver"] for r in machines)
    assert set(classes) == {"rtk", "sbas", "standalone"}
    assert classes["standalone"] > classes["rtk"]  # half the fleet is standalone, a quarter RTK
    white = [c.gnss_white_m for c in sim.machine_sensors if c.gnss_class == "standalone"]
    assert min(white) >= 1.0 and max(white) <= 2.5 and max(white) - min(white) > 0.5
    again = Simulation(load_site(), duration_s=0, seed=4, haulers=40, sensors=MixedFleet())
    assert again.machine_sensors == sim.machine_sensors  # reproducible from the seed


@pytest.fixture(scope="module")
def load_cells() -> dict[str, tuple[Simulation, list]]:
    runs = {}
    for cell in ("ideal", "real"):
        sim = Simulation(load_site(), duration_s=3600, seed=9, hz=2.0, sensors=fleet_sensors("rtk", cell))
        runs[cell] = (sim, list(sim))
    return runs


def _samples(messages: list) -> dict[str, np.ndarray]:
    rows: dict[str, list] = {}
    for m in messages:
        if m.kind == "telemetry" and m.is_json:
            for s in orjson.loads(m.payload) if m.payload.startswith(b"[") else [orjson.loads(m.payload)]:
                rows.setdefault(m.topic.split("/")[3], []).append((s["speed_kmh"], s["payload_kg"]))
    return {k: np.array(v, dtype=float) for k, v in rows.items()}


def test_a_real_load_cell_repeats_neighbouring_values_and_reports_sentinels(load_cells) -> None:
    repeats = {}
    sentinels = minus_99 = hours = 0
    for cell, (_sim, messages) in load_cells.items():
        shares = []
        for machine_id, a in _samples(messages).items():
            if not machine_id.startswith(("HX", "RT")):
                continue
            speed, payload = a[:, 0], a[:, 1]
            valid = (payload[1:] >= 0) & (payload[:-1] >= 0)
            moving = valid & (speed[1:] > 5) & (speed[:-1] > 5) & (payload[1:] > 0.5 * 28_000)
            shares.append(float((payload[1:] == payload[:-1])[moving].mean()))
            if cell == "real":
                good = payload[payload >= 0]
                assert np.all(np.mod(good, 100.0) == 0)  # 100-kg steps
                sentinels += int((payload < 0).sum())
                minus_99 += int((payload == -99).sum())
                hours += 1
        repeats[cell] = float(np.median(shares))
    assert repeats["ideal"] < 0.05
    assert 0.3 <= repeats["real"] <= 0.8  # the recorded 60-t trucks: 52-54 %
    expected = SensorConfig.receiver("rtk", load_cell="real").payload_sentinel_rate * 3600 * hours
    assert 0.5 * expected <= sentinels <= 1.6 * expected and 0 < minus_99 < sentinels


def test_a_real_load_cell_leaves_the_ground_truth_alone(load_cells) -> None:
    ideal, real = (load_cells[c][0].truth_records() for c in ("ideal", "real"))
    assert [r for r in ideal if r["type"] == "cycle"] == [r for r in real if r["type"] == "cycle"]
    assert sum(r["payload_sentinels"] for r in real if r["type"] == "machine") > 0


def test_a_real_load_cell_lags_the_last_bucket_and_drifts_while_standing() -> None:
    config = SensorConfig.receiver("rtk", load_cell="real", payload_settle_frac=0.0, payload_sentinel_rate=0.0)
    model = SensorModel(np.random.default_rng(1), config, 1.0, 55_600, "hauler")
    for _ in range(30):
        model.read(0, 0, 0, 0, 0.0, False)
    after = [model.read(0, 0, 0, 0, 50_000.0, True)[4] for _ in range(20)]
    assert after[0] < 20_000 and after[3] < 45_000  # still settling seconds after the bucket
    assert after[-1] == pytest.approx(50_000, rel=0.01)
    drift = SensorConfig.receiver("rtk", load_cell="real", payload_sentinel_rate=0.0)
    model = SensorModel(np.random.default_rng(2), drift, 1.0, 55_600, "hauler")
    offsets = []
    for _ in range(300):  # drive a little, then stand a minute: each stop settles to its own offset
        for _ in range(10):
            model.read(0, 0, 8.0, 0, 50_000.0, True)
        standing = [model.read(0, 0, 0.0, 0, 50_000.0, True)[4] for _ in range(60)]
        offsets.append(standing[-1] / 50_000 - 1)
    assert np.std(offsets) == pytest.approx(drift.payload_settle_frac, rel=0.25)


@pytest.mark.parametrize("site", ["demo_quarry", "copper_pit"])
@pytest.mark.parametrize("hz", [0.5, 10.0])
@pytest.mark.slow
def test_slow_and_fast_sample_rates_run_end_to_end(site: str, hz: float) -> None:
    duration = 1800
    reference = Simulation(load_site(site), duration_s=duration, seed=2, hz=1.0)
    list(reference)
    sim = Simulation(load_site(site), duration_s=duration, seed=2, hz=hz)
    messages = list(sim)
    truth = sim.truth_records()
    count = Counter(r["type"] for r in truth)
    expected = Counter(r["type"] for r in reference.truth_records())
    assert count["cycle"] >= 0.8 * expected["cycle"] > 0
    assert count["zone_visit"] >= 0.8 * expected["zone_visit"]
    samples = _samples(messages)
    assert {len(a) for a in samples.values()} == {int(duration * hz) + 1}
    stamps = [orjson.loads(m.payload)["ts"] for m in messages if m.kind == "telemetry"
              and m.topic.endswith("/HX-01/telemetry" if site == "demo_quarry" else "/CT-01/telemetry")]
    steps = np.diff(np.array([s.rstrip("Z") for s in stamps], dtype="datetime64[ms]").astype(float)) / 1000
    assert np.allclose(steps, 1 / hz)
    speeds = np.concatenate([a[:, 0] for a in samples.values()])
    assert speeds.max() < 70 and (speeds > 20).mean() > 0.1  # haulers drive at haul-road speeds


def test_the_second_site_differs_from_the_demo_and_simulates() -> None:
    assert {"demo_quarry", "copper_pit"} <= set(shipped_sites())
    demo, pit = load_site(), load_site("copper_pit")
    assert pit.frame.origin_lat < 0 and pit.frame.origin_lon < 0 < demo.frame.origin_lat
    assert any(len(z.polygon) not in (4, 5) for z in pit.zones)  # not all rectangles
    assert {m.model for m in pit.machines}.isdisjoint({m.model for m in demo.machines})
    sim = Simulation(pit, site_id="pit", duration_s=3600, seed=1, behaviour=BEHAVIOURS["recorded"],
                     sensors="standalone")
    list(sim)
    cycles = [r for r in sim.truth_records() if r["type"] == "cycle"]
    assert {(r["load_zone"], r["dump_zone"]) for r in cycles} == {("bench-3710", "rom-pad"),
                                                                  ("bench-3650", "waste-east")}
    pauses = [(np.datetime64(r["haul_start"].rstrip("Z")) - np.datetime64(r["loaded_at"].rstrip("Z")))
              / np.timedelta64(1, "s") for r in cycles]
    assert min(pauses) >= 49  # the recorded habit: trucks stand loaded 49-60 s after the last pass


def test_standing_truth_is_opt_in_and_covers_loading() -> None:
    plain = Simulation(load_site(), duration_s=900, seed=3)
    list(plain)
    assert not [r for r in plain.truth_records() if r["type"] == "standing"]
    sim = Simulation(load_site(), duration_s=900, seed=3, truth_settings=TruthSettings(standing_min_s=10))
    list(sim)
    records = sim.truth_records()
    standing = [r for r in records if r["type"] == "standing"]
    assert all((np.datetime64(r["to"].rstrip("Z")) - np.datetime64(r["from"].rstrip("Z")))
               / np.timedelta64(1, "s") >= 10 for r in standing)
    for cycle in (r for r in records if r["type"] == "cycle"):  # a truck stands while it is loaded
        loading = [r for r in standing if r["machine_id"] == cycle["machine_id"]
                   and r["from"] <= cycle["load_start"] and r["to"] >= cycle["loaded_at"]]
        assert len(loading) == 1
