"""Property tests of the decoders in front of ingest (decoders/): whatever arrives, nothing crashes, every
message is stored, rejected with a one-line reason, or (Sparkplug commands) knowingly not machine data; a bad
reading never costs a good one beside it; Sparkplug never decodes a value it cannot be sure of; the ISO 15143-3
reader either reads a document or says in one line why not. atheris runs the same decoders by hand:
``python tests/fuzz/fuzz_decoders.py -runs=100000``.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from decoders.iso15143.reader import FeedFormatError, read_document
from decoders.sparkplug.decoder import metric_value
from decoders.sparkplug.schema import Payload
from tests.decoders.helpers import decode, front_for, samples

EXAMPLES = 200
NOW_S = 1_764_900_000.0

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

MAPPED = {"route": [{"decoder": "mapped-json", "site": "fz", "topics": ["fz/+/up"], "options": {
    "records": "r", "ts": "t", "ts_format": "epoch_s",
    "fields": {"lat": "p.la", "lon": "p.lo", "speed_kmh": {"path": "v", "unit": "m/s"}, "engine_on": "ign"}}}]}
MAPPED_FRONT = front_for(MAPPED)

reading = st.fixed_dictionaries({}, optional={
    "t": st.one_of(st.floats(NOW_S - 1e6, NOW_S), st.integers(0, 2**40), json_scalars),
    "p": st.one_of(st.fixed_dictionaries({}, optional={"la": st.one_of(st.floats(-100, 100), json_scalars),
                                                       "lo": st.one_of(st.floats(-200, 200), json_scalars)}),
                   json_values),
    "v": st.one_of(st.floats(0, 60), json_scalars),
    "ign": st.one_of(st.booleans(), st.sampled_from([0, 1, "on", "off", "x"])),
    "other": json_values,
})


def _one_line(out: Any) -> None:
    for reject in out.rejects:
        assert reject.reason and "\n" not in reject.reason, reject.reason


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(["fz/m1/up", "fz//up", "fz/m 1/up"]))
def test_mapped_json_any_bytes_are_samples_or_one_line_rejects(raw: bytes, topic: str) -> None:
    out = decode(MAPPED_FRONT, (topic, raw))
    assert len(out.rows) + len(out.rejects) >= 1
    _one_line(out)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(reading, json_values), min_size=1, max_size=6))
def test_mapped_json_every_reading_is_stored_or_rejected_and_good_ones_survive_bad_neighbours(
    records: list[Any]
) -> None:
    together = decode(MAPPED_FRONT, ("fz/m1/up", json.dumps({"r": records}).encode()))
    _one_line(together)
    message_level = [r for r in together.rejects if not r.reason.startswith("sample ")]
    if message_level:
        assert together.rows == [] and len(together.rejects) == 1
        return
    assert len(together.rows) + len(together.rejects) == len(records)
    alone = [row for record in records for row in samples(decode(MAPPED_FRONT, ("fz/m1/up", json.dumps(
        {"r": [record]}).encode())))]
    assert sorted(map(repr, samples(together))) == sorted(map(repr, alone))


# -- Sparkplug B -------------------------------------------------------------------------------------

SPB = {"route": [{"decoder": "sparkplug-b", "site": "fz", "topics": ["spBv1.0/g/#"], "options": {
    "metrics": {"lat": "lat", "on": "engine_on"}, "rebirth_interval_s": 0}}]}
KINDS = ["NBIRTH", "NDATA", "DBIRTH", "DDATA", "DDEATH", "NDEATH"]
metric = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["lat", "on", "bdSeq", "junk"]), "alias": st.integers(0, 4),
    "timestamp": st.integers(1_700_000_000_000, 1_800_000_000_000), "datatype": st.sampled_from([1, 4, 10, 11, 12]),
    "is_null": st.booleans(), "is_historical": st.booleans(),
    "double_value": st.floats(allow_nan=True), "boolean_value": st.booleans(), "long_value": st.integers(0, 2**64 - 1),
    "string_value": st.text(max_size=5)})
named_metric = metric.map(lambda m: {"name": "lat", **m})
message = st.tuples(st.sampled_from(KINDS), st.sampled_from(["", "d1", "d2"]),
                    st.sampled_from(["next", "next", "next", "next", None, 0, 7]),  # mostly an edge node in order
                    st.lists(metric, max_size=4) | st.lists(named_metric, min_size=1, max_size=3))


def _payload(seq: int | None, metrics: list[dict]) -> bytes:
    body = Payload(timestamp=1_764_900_000_000)
    if seq is not None:
        body.seq = seq
    for fields in metrics:
        values = [k for k in ("double_value", "boolean_value", "long_value", "string_value") if k in fields]
        body.metrics.add(**{k: v for k, v in fields.items() if k not in values[1:]})
    return body.SerializeToString()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(message, st.tuples(st.sampled_from(KINDS), st.just(""), st.none(), st.binary(max_size=40))),
                min_size=1, max_size=16))
def test_sparkplug_sequences_never_crash_and_only_decode_what_births_vouch_for(sequence: list[tuple]) -> None:
    front = front_for(SPB)
    expected_seq: int | None = None  # the oracle: a message is decodable only inside an unbroken run since NBIRTH
    names: dict[tuple[str, int], str] = {}
    sent_seq = -1
    for kind, device, seq, metrics in sequence:
        if seq == "next":
            seq = 0 if kind == "NBIRTH" else (sent_seq + 1) % 256
        if seq is not None:
            sent_seq = seq
        if kind[0] == "N":
            device = ""
        elif not device:
            device = "d1"
        topic = f"spBv1.0/g/{kind}/e" + (f"/{device}" if device else "")
        raw = metrics if isinstance(metrics, bytes) else _payload(seq, metrics)
        out = decode(front, (topic, raw))
        _one_line(out)
        try:
            parsed = Payload.FromString(raw)
        except Exception:  # noqa: BLE001 - any parse failure: the decoder must have rejected it
            assert out.rows == [] and len(out.rejects) == 1
            continue
        has_seq = parsed.HasField("seq")
        trusted = False
        if kind == "NBIRTH":
            trusted = all(m.HasField("name") for m in parsed.metrics)
            expected_seq = parsed.seq if trusted and has_seq else 0 if trusted else None
            names = {("", m.alias): m.name for m in parsed.metrics if m.HasField("alias")} if trusted else {}
        elif kind == "NDEATH":
            if out.statuses:
                expected_seq = None
            continue
        elif expected_seq is not None and has_seq and parsed.seq == (expected_seq + 1) % 256:
            expected_seq = parsed.seq
            trusted = True
            if kind == "DBIRTH":
                names.update({(device, m.alias): m.name for m in parsed.metrics if m.HasField("alias")})
        else:
            expected_seq = None
        if not trusted:
            assert out.rows == [], (kind, seq, out.rows)
            continue
        event(f"{kind} trusted, rows: {bool(out.rows)}")
        sent = {float(v) for m in parsed.metrics for t in (None, 1, 2, 3, 4)
                if type(v := metric_value(m, t)) in (int, float)}  # any reading of this message's values
        for row in out.rows:
            assert row[5] is None or row[5] in sent  # a stored lat is a value of this very message


# -- ISO 15143-3 reader ------------------------------------------------------------------------------

aemp_names = st.sampled_from(["Fleet", "fleet", "Equipment", "EquipmentHeader", "EquipmentID", "Location", "Latitude",
                              "Longitude", "datetime", "DateTime", "Links", "Rel", "Href", "CumulativeOperatingHours",
                              "Hour", "FuelUsed", "FuelUnits", "FuelConsumed", "Running", "EngineStatus", "x"])
aemp_json = st.recursive(json_scalars | st.sampled_from(["2026-12-05T09:00:00Z", "next", "59.3", "litre", "gallon"]),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(aemp_names, inner, max_size=4),
                         max_leaves=14)


def _read_or_refuse(body: bytes) -> None:
    try:
        document = read_document(body)
    except FeedFormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for equipment in document.equipment:
        for problem in equipment.problems:
            assert problem and "\n" not in problem


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_aemp_reader_any_bytes_are_read_or_refused_in_one_line(raw: bytes) -> None:
    _read_or_refuse(raw)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(aemp_json)
def test_aemp_reader_any_aemp_shaped_json_is_read_or_refused_in_one_line(doc: Any) -> None:
    _read_or_refuse(json.dumps(doc).encode())
