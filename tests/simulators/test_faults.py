"""Each fault appears at its configured rate, and dropouts upload arrays."""

from __future__ import annotations

import math
from collections import Counter

import orjson
import pytest

from simulators.faults import parse_faults
from sitepulse.errors import SitePulseError


def _within(count: int, n: int, p: float) -> bool:
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= 4.5 * sd + 1


def test_fault_rates(faulty):
    recs = {r["kind"]: r for r in faulty.truth if r["type"] == "fault"}
    live = recs["duplicate"]["live_messages"]
    assert live > 30_000
    cfg = faulty.sim.faults
    for kind in ("duplicate", "reorder", "malformed", "wrong_type"):
        assert _within(recs[kind]["count"], live, getattr(cfg, kind)), (kind, recs[kind])
    # dropouts: per machine-minute while online
    machine_minutes = live / 60.0
    assert _within(recs["dropout"]["count"], int(machine_minutes), cfg.dropout), recs["dropout"]


def test_faults_are_visible_in_the_stream(faulty):
    telem = [m for m in faulty.messages if m.kind == "telemetry"]
    malformed = wrong = arrays = 0
    seen = Counter()
    out_of_order = 0
    last_seq: dict[str, int] = {}
    for m in telem:
        mid = m.topic.split("/")[3]
        try:
            s = orjson.loads(m.payload)
        except orjson.JSONDecodeError:
            malformed += 1
            continue
        if isinstance(s, list):
            arrays += 1
            assert all(isinstance(x, dict) and "ts" in x for x in s)
            continue
        if not isinstance(s, dict) or "seq" not in s:
            malformed += 1
            continue
        types_ok = (isinstance(s["lat"], float) and isinstance(s["lon"], float)
                    and isinstance(s["speed_kmh"], float) and isinstance(s["payload_kg"], float)
                    and type(s["seq"]) is int and isinstance(s["engine_on"], bool) and isinstance(s["ts"], str))
        if not types_ok:
            wrong += 1
        seen[m.payload] += 1
        seq = s["seq"] if type(s["seq"]) is int else int(s["seq"])
        if seq < last_seq.get(mid, -1):
            out_of_order += 1
        last_seq[mid] = max(seq, last_seq.get(mid, -1))
    recs = {r["kind"]: r for r in faulty.truth if r["type"] == "fault"}
    dupes = sum(c - 1 for c in seen.values() if c > 1)
    # a malformed or wrong-typed message can also be a duplicate; counts agree within that overlap
    assert abs(malformed - recs["malformed"]["count"]) <= recs["malformed"]["count"] * 0.05 + 2
    assert abs(wrong - recs["wrong_type"]["count"]) <= recs["wrong_type"]["count"] * 0.1 + 2
    assert abs(dupes - recs["duplicate"]["count"]) <= recs["duplicate"]["count"] * 0.1 + 2
    assert out_of_order >= recs["reorder"]["count"] * 0.5
    assert arrays == recs["dropout"]["messages"] > 0


def test_dropouts_upload_buffered_samples_as_arrays_and_lose_nothing(faulty):
    per_machine: dict[str, set[int]] = {}
    for m in faulty.messages:
        if m.kind != "telemetry":
            continue
        try:
            s = orjson.loads(m.payload)
        except orjson.JSONDecodeError:
            continue
        for x in s if isinstance(s, list) else [s]:
            if isinstance(x, dict) and "seq" in x:
                per_machine.setdefault(m.topic.split("/")[3], set()).add(int(x["seq"]))
    drops = [r for r in faulty.truth if r["type"] == "dropout"]
    assert drops
    statuses = [m for m in faulty.messages if m.kind == "status" and m.payload == b"offline"]
    assert len(statuses) >= len(drops)
    n_ticks = faulty.sim.n_ticks + 1
    for mid, seqs in per_machine.items():
        # every sample arrives somewhere except those replaced by malformed payloads
        assert len(seqs) >= n_ticks - 200, mid


def test_no_faults_means_a_clean_stream(hour):
    for m in hour.messages:
        if m.kind == "telemetry":
            assert isinstance(orjson.loads(m.payload), dict)


@pytest.mark.parametrize("spec", ["dropout=2", "nonsense", "duplicate=abc", "upload_chunk=-1"])
def test_bad_fault_specs_are_user_errors(spec):
    with pytest.raises(SitePulseError):
        parse_faults(spec)


def test_fault_spec_parses():
    cfg = parse_faults("dropout=0.01,duplicate=0.02,reorder=0.01,malformed=0.005,wrong_type=0.005")
    assert (cfg.dropout, cfg.duplicate, cfg.reorder, cfg.malformed, cfg.wrong_type) == (
        0.01, 0.02, 0.01, 0.005, 0.005)
    assert parse_faults(None).duplicate == 0
