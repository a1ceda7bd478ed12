"""Sensor faults per machine: each changes only its machine's sensor, from when it says, with ground truth."""

from __future__ import annotations

import math

import orjson
import pytest

from simulators.engine import simulate
from simulators.faults import parse_faults
from simulators.site import load_site
from sitepulse.errors import SitePulseError

SPEC = ("heading=stuck0:HX-01,heading=offset180:HX-02@60,heading=noisy30:HX-03,heading=absent:HX-04,"
        "speed=stuck:HX-05@30-200,payload=offset+2.5:HX-06,position=implausible:HX-07,"
        "fuel=stuck:EX-01,hours=implausible:WL-01,clock=skew+30:WL-02,clock=drift+3600:RT-01")


def _samples(faults: str | None, seconds: float = 300) -> tuple[dict[str, list[dict]], list[dict]]:
    sim = simulate(load_site(), duration_s=seconds, seed=3, faults=parse_faults(faults), skew_max_s=0.0)
    out: dict[str, list[dict]] = {}
    for m in sim:
        if m.kind == "telemetry" and m.is_json:
            p = orjson.loads(m.payload)
            out.setdefault(m.topic.split("/")[3], []).extend(p if isinstance(p, list) else [p])
    return out, sim.truth_records()


@pytest.fixture(scope="module")
def runs() -> tuple[dict, dict, list[dict]]:
    clean, _ = _samples(None)
    faulty, truth = _samples(SPEC)
    return clean, faulty, truth


def _diff(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def test_each_fault_changes_only_its_sensor_of_its_machine(runs) -> None:
    clean, faulty, _ = runs
    for machine in ("HX-01", "HX-02", "HX-03", "HX-04"):
        for c, f in zip(clean[machine], faulty[machine], strict=True):
            assert {k: v for k, v in c.items() if k != "heading_deg"} == \
                   {k: v for k, v in f.items() if k != "heading_deg"}
    assert {s["heading_deg"] for s in faulty["HX-01"]} == {0.0}
    assert all(_diff(c["heading_deg"], f["heading_deg"]) == pytest.approx(180, abs=0.11)
               for c, f in zip(clean["HX-02"][60:], faulty["HX-02"][60:], strict=True))
    assert clean["HX-02"][:60] == faulty["HX-02"][:60]  # @60: healthy before
    noise = [_diff(c["heading_deg"], f["heading_deg"]) for c, f in zip(clean["HX-03"], faulty["HX-03"],
                                                                       strict=True)]
    assert max(noise) <= 30.1 and sum(noise) / len(noise) > 10
    assert all("heading_deg" not in s for s in faulty["HX-04"])
    stuck = [s["speed_kmh"] for s in faulty["HX-05"][30:200]]
    assert len(set(stuck)) == 1 and faulty["HX-05"][250]["speed_kmh"] == clean["HX-05"][250]["speed_kmh"]
    assert all(f["payload_kg"] - c["payload_kg"] == pytest.approx(2500, abs=0.11)
               for c, f in zip(clean["HX-06"], faulty["HX-06"], strict=True))
    far = [math.hypot((f["lat"] - c["lat"]) * 111_000, (f["lon"] - c["lon"]) * 57_000)
           for c, f in zip(clean["HX-07"], faulty["HX-07"], strict=True)]
    assert 3 <= sum(d > 30 for d in far) <= 60 and max(far) < 450
    assert len({s["fuel_used_l"] for s in faulty["EX-01"]}) == 1
    assert any(abs(f["engine_hours"] - c["engine_hours"]) > 10 for c, f in zip(clean["WL-01"], faulty["WL-01"],
                                                                                strict=True))
    assert faulty["WL-02"][5]["ts"][:19] == "2026-01-05T06:00:35"  # 30 s ahead
    assert faulty["RT-01"][-1]["ts"][:19] == "2026-01-05T06:10:00"  # 3600 s per hour: 300 s ahead after 300 s
    assert faulty["HX-08"] == clean["HX-08"] if "HX-08" in clean else True


def test_ground_truth_says_which_and_when(runs) -> None:
    _, _, truth = runs
    found = {(r["machine_id"], r["sensor"], r["mode"]): r for r in truth if r["type"] == "sensor_fault"}
    assert len(found) == 11
    assert found[("HX-02", "heading", "offset")]["started_at"] == "2026-01-05T06:01:00.000Z"
    assert found[("HX-05", "speed", "stuck")]["ended_at"] == "2026-01-05T06:03:20.000Z"
    assert found[("HX-01", "heading", "stuck")]["value"] == 0.0
    site = next(r for r in truth if r["type"] == "site")
    assert "payload=offset+2.5:HX-06" in site["settings"]["faults"]["sensor_faults"]


@pytest.mark.parametrize(("spec", "message"), [
    ("heading=wobbly:HX-01", "heading has no mode 'wobbly'; modes: stuck, absent, noisy, offset"),
    ("heading=stuck0", "is not SENSOR=MODE[VALUE]:MACHINE"),
    ("payload=offset:HX-01", "offset needs a value"),
    ("speed=stuck:HX-01@100-50", "must end after it starts"),
    ("compass=stuck:HX-01", "SENSOR=MODE:MACHINE with SENSOR one of heading, speed"),
])
def test_bad_fault_specs_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(SitePulseError) as caught:
        parse_faults(spec)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_machine_is_named() -> None:
    with pytest.raises(SitePulseError, match="no machine 'H-99' on this site"):
        simulate(load_site(), duration_s=10, faults=parse_faults("heading=stuck0:H-99"))
