"""Sparkplug B decoding, message by message: births, aliases, seq, deaths, rebirth requests, historical values."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from decoders.sparkplug.decoder import metric_value
from decoders.sparkplug.schema import PROTO, Payload, file_descriptor
from tests.decoders.helpers import decode, front_for, on_grid, samples

GROUP, EDGE = "quarry", "gw-1"
T0 = int(time.time() * 1000) - 60_000
CONFIG = {
    "route": [{
        "decoder": "sparkplug-b", "site": "north", "topics": ["spBv1.0/quarry/#"],
        "options": {
            "metrics": {"GPS/Latitude": "lat", "GPS/Longitude": "lon", "Engine/Hours": "engine_hours",
                        "Engine/Running": "engine_on", "Body/Load": {"field": "payload_kg", "scale": 1000.0}},
            "machine_ids": {"Truck 7": "HX-07"},
            "rebirth_interval_s": 0,
        },
    }]
}


def topic(kind: str, device: str | None = None) -> str:
    return f"spBv1.0/{GROUP}/{kind}/{EDGE}" + (f"/{device}" if device else "")


def payload(seq: int | None, metrics: list[dict[str, Any]], ts: int = T0) -> bytes:
    message = Payload(timestamp=ts)
    if seq is not None:
        message.seq = seq
    for metric in metrics:
        message.metrics.add(**metric)
    return message.SerializeToString()


NBIRTH = payload(0, [{"name": "bdSeq", "datatype": 4, "long_value": 3}, {"name": "Node Control/Rebirth",
                     "datatype": 11, "boolean_value": False}])
DBIRTH = payload(1, [
    {"name": "GPS/Latitude", "alias": 1, "datatype": 10, "double_value": 59.3},
    {"name": "GPS/Longitude", "alias": 2, "datatype": 10, "double_value": 18.1},
    {"name": "Engine/Hours", "alias": 3, "datatype": 10, "double_value": 1200.5},
    {"name": "Engine/Running", "alias": 4, "datatype": 11, "boolean_value": True},
    {"name": "Body/Load", "alias": 5, "datatype": 9, "float_value": 12.5},
    {"name": "Cab/Temperature", "alias": 6, "datatype": 2, "int_value": 65535},
])


def ddata(seq: int, ts: int, lat: float, **more: Any) -> bytes:
    return payload(seq, [{"alias": 1, "double_value": lat, "timestamp": ts}, *more.get("metrics", [])], ts)


def test_birth_then_alias_only_data_decode_to_mapped_fields() -> None:
    sent: list = []
    front = front_for(CONFIG, sent)
    out = decode(front, (topic("NBIRTH"), NBIRTH), (topic("DBIRTH", "Truck 7"), DBIRTH),
                 (topic("DDATA", "Truck 7"), ddata(2, T0 + 1000, 59.31)))
    assert out.rejects == [] and sent == []
    rows = samples(out)
    assert rows[0] == {"site_id": "north", "machine_id": "HX-07", "ts": T0 / 1000, "lat": on_grid("lat", 59.3),
                       "lon": on_grid("lon", 18.1),
                       "engine_hours": 1200.5, "engine_on": True, "payload_kg": 12500.0}
    assert rows[1] == {"site_id": "north", "machine_id": "HX-07", "ts": (T0 + 1000) / 1000,
                       "lat": on_grid("lat", 59.31)}
    assert [(s.machine_id, s.status) for s in out.statuses] == [("gw-1", "online"), ("HX-07", "online")]


def test_seq_gap_rejects_requests_rebirth_and_refuses_data_until_nbirth() -> None:
    sent: list = []
    front = front_for(CONFIG, sent)
    decode(front, (topic("NBIRTH"), NBIRTH), (topic("DBIRTH", "Truck 7"), DBIRTH))
    out = decode(front, (topic("DDATA", "Truck 7"), ddata(4, T0 + 1000, 59.4)),
                 (topic("DDATA", "Truck 7"), ddata(5, T0 + 2000, 59.5)))
    assert out.rows == []
    assert [r.code for r in out.rejects] == ["seq-gap", "before-birth"]
    assert "seq 4 where 2 was due" in out.rejects[0].reason and "rebirth requested" in out.rejects[0].reason
    assert "until the edge node's next NBIRTH" in out.rejects[1].reason
    assert [t for t, _ in sent] == [f"spBv1.0/{GROUP}/NCMD/{EDGE}"] * 2
    request = Payload.FromString(sent[0][1])
    assert [(m.name, m.boolean_value) for m in request.metrics] == [("Node Control/Rebirth", True)]
    out = decode(front, (topic("NBIRTH"), NBIRTH), (topic("DBIRTH", "Truck 7"), DBIRTH),
                 (topic("DDATA", "Truck 7"), ddata(2, T0 + 3000, 59.6)))
    assert out.rejects == [] and [r["lat"] for r in samples(out)] == [on_grid("lat", 59.3), on_grid("lat", 59.6)]


def test_data_before_any_birth_and_unknown_alias_are_rejected_never_guessed() -> None:
    sent: list = []
    front = front_for(CONFIG, sent)
    out = decode(front, (topic("DDATA", "Truck 7"), ddata(9, T0, 59.0)))
    assert out.rows == [] and out.rejects[0].code == "before-birth" and len(sent) == 1
    front = front_for(CONFIG, sent)
    out = decode(front, (topic("NBIRTH"), NBIRTH), (topic("DBIRTH", "Truck 7"), DBIRTH),
                 (topic("DDATA", "Truck 7"), payload(2, [{"alias": 99, "double_value": 1.0}])),
                 (topic("DDATA", "Other"), payload(3, [{"alias": 1, "double_value": 1.0}])))
    assert [r.code for r in out.rejects] == ["unknown-alias", "before-birth"]
    assert "alias 99" in out.rejects[0].reason
    assert len(samples(out)) == 1  # the birth's values only


def test_device_data_before_its_dbirth_is_refused() -> None:
    front = front_for(CONFIG)
    out = decode(front, (topic("NBIRTH"), NBIRTH), (topic("DDATA", "Truck 7"), ddata(1, T0, 59.0)))
    assert [r.code for r in out.rejects] == ["before-birth"] and "before its DBIRTH" in out.rejects[0].reason


def test_ndeath_with_matching_bdseq_marks_node_and_devices_offline_stale_one_is_ignored() -> None:
    front = front_for(CONFIG)
    decode(front, (topic("NBIRTH"), NBIRTH), (topic("DBIRTH", "Truck 7"), DBIRTH))
    stale = payload(None, [{"name": "bdSeq", "datatype": 4, "long_value": 2}])
    out = decode(front, (topic("NDEATH"), stale))
    assert out.statuses == [] and out.rejects[0].code == "death-stale"
    death = payload(None, [{"name": "bdSeq", "datatype": 4, "long_value": 3}])
    out = decode(front, (topic("NDEATH"), death), (topic("DDATA", "Truck 7"), ddata(2, T0, 59.0)))
    assert [(s.machine_id, s.status) for s in out.statuses] == [("gw-1", "offline"), ("HX-07", "offline")]
    assert [r.code for r in out.rejects] == ["before-birth"]


def test_ddeath_marks_the_device_offline() -> None:
    front = front_for(CONFIG)
    out = decode(front, (topic("NBIRTH"), NBIRTH), (topic("DBIRTH", "Truck 7"), DBIRTH),
                 (topic("DDEATH", "Truck 7"), payload(2, [])))
    assert [(s.machine_id, s.status) for s in out.statuses][-1] == ("HX-07", "offline") and out.rejects == []


def test_historical_metrics_become_older_samples_beside_the_current_one() -> None:
    front = front_for(CONFIG)
    decode(front, (topic("NBIRTH"), NBIRTH), (topic("DBIRTH", "Truck 7"), DBIRTH))
    old = T0 - 3_600_000
    out = decode(front, (topic("DDATA", "Truck 7"), payload(2, [
        {"alias": 1, "double_value": 59.0, "timestamp": old, "is_historical": True},
        {"alias": 2, "double_value": 18.0, "timestamp": old, "is_historical": True},
        {"alias": 1, "double_value": 59.9, "timestamp": T0 + 5000},
    ])))
    assert [(r["ts"], r["lat"]) for r in samples(out)] == [(old / 1000, 59.0),
                                                                  ((T0 + 5000) / 1000, on_grid("lat", 59.9))]


def test_values_out_of_range_are_rejected_by_the_contract_others_kept() -> None:
    front = front_for(CONFIG)
    decode(front, (topic("NBIRTH"), NBIRTH), (topic("DBIRTH", "Truck 7"), DBIRTH))
    out = decode(front, (topic("DDATA", "Truck 7"), payload(2, [
        {"alias": 1, "double_value": 95.0, "timestamp": T0 + 1},
        {"alias": 1, "double_value": 59.5, "timestamp": T0 + 2},
    ])))
    assert [r["lat"] for r in samples(out)] == [59.5]
    assert out.rejects[0].reason == "sample 0: lat 95 is outside -90..90"


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x12\x05\x0a\x03ab"])
def test_garbage_payloads_are_rejects_with_a_reason(raw: bytes) -> None:
    out = decode(front_for(CONFIG), (topic("NBIRTH"), raw))
    assert len(out.rejects) == 1 and out.rejects[0].code == "not-protobuf" and out.rows == []


def test_commands_and_host_state_are_not_machine_data_and_bad_topics_are_rejected() -> None:
    front = front_for(CONFIG)
    out = decode(front, (topic("NCMD"), b"x"), ("spBv1.0/quarry/NDATA", b""), (topic("NDATA", "dev"), b""))
    assert [r.code for r in out.rejects] == ["topic", "topic"]


def test_signed_integers_are_restored_from_either_encoding() -> None:
    metric = Payload.Metric(datatype=1, int_value=0xFE)  # Int8 -2 as 8-bit two's complement
    assert metric_value(metric, 1) == -2
    assert metric_value(Payload.Metric(datatype=1, int_value=0xFFFFFFFE), 1) == -2  # sign-extended
    assert metric_value(Payload.Metric(datatype=4, long_value=2**64 - 5), 4) == -5
    assert metric_value(Payload.Metric(datatype=7, int_value=0xFFFFFFFE), 7) == 0xFFFFFFFE


def test_a_float32_metric_is_the_decimal_the_device_meant() -> None:
    # protobuf widens a float32 to the nearest double: 0.6 arrives as 0.6000000238418579
    assert metric_value(Payload.Metric(datatype=9, float_value=0.6), 9) == 0.6
    assert metric_value(Payload.Metric(datatype=9, float_value=59.3312), 9) == 59.3312
    assert metric_value(Payload.Metric(datatype=10, double_value=0.6000000238418579), 10) == 0.6000000238418579


def test_schema_is_built_from_the_vendored_proto() -> None:
    proto = file_descriptor(PROTO.read_text())
    metric = proto.message_type[0].nested_type[0]
    assert {f.name: f.number for f in metric.field} == {
        "name": 1, "alias": 2, "timestamp": 3, "datatype": 4, "is_historical": 5, "is_transient": 6, "is_null": 7,
        "int_value": 10, "long_value": 11, "float_value": 12, "double_value": 13, "boolean_value": 14,
        "string_value": 15, "bytes_value": 16}
    assert {f.name: f.number for f in proto.message_type[0].field} == {
        "timestamp": 1, "metrics": 2, "seq": 3, "uuid": 4, "body": 5}


def test_cli_decodes_the_fixtures_an_independent_implementation_wrote() -> None:
    from typer.testing import CliRunner

    from sitepulse.cli import _app

    folder = Path(__file__).parents[2] / "decoders" / "sparkplug"
    steps = [("spBv1.0/north-quarry/NBIRTH/gw-1", "nbirth.bin"), ("spBv1.0/north-quarry/DBIRTH/gw-1/Truck 7",
             "dbirth.bin"), ("spBv1.0/north-quarry/DDATA/gw-1/Truck 7", "ddata_aliases.bin"),
             ("spBv1.0/north-quarry/DDATA/gw-1/Truck 7", "ddata_gap.bin"), ("spBv1.0/north-quarry/NDEATH/gw-1",
             "ndeath.bin")]
    args = ["decoders", "test", "--config", str(folder / "sample.toml")]
    for step_topic, name in steps:
        args += ["--topic", step_topic, "--payload", str(folder / "fixtures" / name)]
    result = CliRunner().invoke(_app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[1].startswith("sample (sparkplug-b) ") and '"payload_kg":27500.0' in lines[1]
    assert '"machine_id":"HX-07"' in lines[3] and '"lat":59.3294' in lines[3] and '"lon":18.0687' in lines[3]
    assert lines[4].startswith("rejected (sparkplug-b) sparkplug-b: DDATA seq 9 where 3 was due")
    assert lines[5] == "would publish (sparkplug-b) a command on spBv1.0/north-quarry/NCMD/gw-1"
    assert lines[6:] == ["status (sparkplug-b) north-quarry/gw-1 offline",
                         "status (sparkplug-b) north-quarry/HX-07 offline"]
