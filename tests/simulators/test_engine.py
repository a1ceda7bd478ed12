"""The simulated hour looks like a quarry: cycle counts, payloads, timing, determinism."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import orjson

from simulators.engine import Simulation
from simulators.machines import MODELS, Behaviour, band, power_limited_speed
from simulators.site import load_site
from sitepulse.recording import write_jsonl

from .conftest import run


def _ts(s: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def test_cycle_counts_per_hour_within_bounds_derived_from_parameters(hour):
    sim = hour.sim
    cycles = [r for r in hour.truth if r["type"] == "cycle"]
    by_truck = Counter(r["machine_id"] for r in cycles)
    for h in sim.haulers:
        loaded = sim.net.route(("spot", (h.load_zone, 0)), h.dump_zone, 0)
        empty = sim.net.route(("spot", (h.dump_zone, 0)), h.load_zone, 0)
        spec = h.spec
        # fastest possible cycle: top speeds everywhere, fewest passes at the shortest pass time,
        # shortest dump -> an upper bound on cycles per hour
        v_loaded = spec.max_loaded_kmh / 3.6
        v_empty = spec.max_empty_kmh / 3.6
        bucket = min(u.spec.rated_payload_kg for u in sim.units[h.load_zone])
        min_passes = max(1, math.ceil(0.75 * spec.rated_payload_kg / (1.08 * bucket)))
        min_pass = min(u.spec.pass_s[0] for u in sim.units[h.load_zone])
        t_min = loaded.length / v_loaded + empty.length / v_empty + min_passes * min_pass + 20 + 5
        # slowest reasonable cycle: 15 km/h loaded / 25 km/h empty (docs/DOMAIN.md lower ends), most passes at
        # the longest pass, longest dump, plus waiting for every other truck of the group once at each end
        max_passes = math.ceil(1.27 * spec.rated_payload_kg / (1.08 * bucket))
        group = [g for g in sim.haulers if g.load_zone == h.load_zone]
        service = max_passes * 40 + 12 + 12
        t_max = (loaded.length / (15 / 3.6) + empty.length / (25 / 3.6) + service + 40 + 12
                 + (len(group) - 1) * (service + 60) / len(sim.units[h.load_zone]))
        n = by_truck[h.id]
        assert n <= math.ceil(3600 / t_min) + 1, (h.id, n, t_min)
        assert n >= math.floor(3600 / t_max) - 1, (h.id, n, t_max)
        assert n >= 2  # a 12-minute-ish cycle gives several per hour on this site
    assert len(cycles) >= 3 * len(sim.haulers)


def test_cycle_times_and_segments_are_ordered_and_realistic(hour):
    for r in (r for r in hour.truth if r["type"] == "cycle"):
        times = [_ts(r[k]) for k in ("load_start", "loaded_at", "haul_start", "dump_start", "dumped_at")]
        assert times == sorted(times)
        if r["dump_queue_start"]:
            assert _ts(r["haul_start"]) < _ts(r["dump_queue_start"]) <= _ts(r["dump_start"])
        load_s = times[1] - times[0]
        assert 25 * (r["passes"] - 1) <= load_s <= 40 * r["passes"] + 5  # docs/DOMAIN.md: passes of 25-40 s
        assert 15 <= times[4] - times[3] <= 45  # dumping takes tens of seconds
        assert r["band"] == band(r["payload_kg"], r["rated_payload_kg"])
        if abs(r["rated_payload_kg"] - 39000) < 1 or abs(r["rated_payload_kg"] - 28000) < 1:
            assert 3 <= r["passes"] <= 6  # a 30-40 t hauler: 3-6 passes


def test_payload_distribution_honours_the_mix():
    rng = np.random.default_rng(1)
    b = Behaviour()
    f = np.array([b.payload_fraction(rng) for _ in range(20_000)])
    assert 0.97 <= f.mean() <= 1.0  # 10/10/20 policy: mean at or below rated
    over110 = (f > 1.1).mean()
    assert 0.03 <= over110 <= 0.10  # some, but under the policy's 10 %
    assert 0 < (f > 1.2).mean() <= 0.015  # rare
    assert 0.03 <= (f < 0.9).mean() <= 0.10


def test_simulated_payloads_follow_the_mix_over_a_few_hours():
    r = run(3 * 3600, seed=3)
    cycles = [c for c in r.truth if c["type"] == "cycle"]
    f = np.array([c["payload_kg"] / c["rated_payload_kg"] for c in cycles])
    assert len(f) > 80
    assert 0.95 <= f.mean() <= 1.02
    assert (f > 1.1).any() and (f < 0.9).any()
    assert (f > 1.2).mean() < 0.05


def test_speeds_depend_on_load_and_grade():
    a30 = MODELS["Volvo A30G"]
    flat_empty = power_limited_speed(a30, 0, 0.0) * 3.6
    climb_loaded = power_limited_speed(a30, 28_000, 0.045) * 3.6
    assert 25 <= flat_empty <= 50
    assert 15 <= climb_loaded <= 35
    assert climb_loaded < power_limited_speed(a30, 28_000, 0.0) * 3.6


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    files = []
    for seed in (5, 5, 6):
        sim = Simulation(load_site(), site_id="t", duration_s=600, seed=seed)
        path = tmp_path / f"run{len(files)}.jsonl"
        write_jsonl(sim, path)
        truth = tmp_path / f"truth{len(files)}.jsonl"
        sim.write_truth(truth)
        files.append((path.read_bytes(), truth.read_bytes()))
    assert files[0] == files[1]
    assert files[0][0] != files[2][0] and files[0][1] != files[2][1]


def test_samples_follow_the_mqtt_contract(hour):
    seqs: dict[str, int] = {}
    sample_keys = {"ts", "seq", "lat", "lon", "speed_kmh", "heading_deg", "payload_kg", "fuel_used_l",
                   "engine_hours", "engine_on"}
    births = {m.topic.split("/")[3]: orjson.loads(m.payload) for m in hour.messages if m.kind == "birth"}
    assert set(births) == {m.id for m in hour.sim.machines}
    assert all(set(b) >= {"kind", "model", "rated_payload_kg"} for b in births.values())
    for m in hour.messages:
        if m.kind != "telemetry":
            continue
        parts = m.topic.split("/")
        assert parts[0] == "sites" and parts[1] == "t" and parts[4] == "telemetry"
        s = orjson.loads(m.payload)
        assert set(s) == sample_keys
        assert s["ts"].endswith("Z") and len(s["ts"]) == 24
        assert s["seq"] == seqs.get(parts[3], -1) + 1
        seqs[parts[3]] = s["seq"]
    assert hour.messages[-1].payload == b"offline"


def test_fuel_and_hours_accumulate(hour):
    for rec in (r for r in hour.truth if r["type"] == "machine"):
        assert 0.99 <= rec["engine_hours"] <= 1.01
        if rec["kind"] == "hauler":
            assert 10 <= rec["fuel_used_l"] <= 80  # L/h of a 28-56 t hauler
            assert 8_000 <= rec["distance_m"] <= 30_000
        assert abs(rec["clock_skew_s"]) <= 0.5
