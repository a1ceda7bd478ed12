"""The telemetry contract: what is stored, what is rejected, and the reason a person reads."""

from __future__ import annotations

import time
import zlib
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from ingest.contract import ROW_COLUMNS, decode
from ingest.topics import KINDS, Partition, owner, parse_partition, parse_partitions, parse_topic
from sitepulse.errors import ConfigError
from sitepulse.settings import load_settings

TOPIC = "sites/quarry-1/machines/haul_07/telemetry"
NOW = time.time()


def one(payload: object, topic: str = TOPIC, **kw: object):
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return decode(topic, raw, **kw)


def row_dict(row: tuple) -> dict:
    return dict(zip(ROW_COLUMNS, row, strict=True))


def test_single_sample_with_epoch_ts_is_a_row_and_ids_come_from_the_topic() -> None:
    out = one({"ts": NOW, "seq": 3, "lat": -33.5, "lon": 151.2, "payload_kg": 0.0, "engine_on": True})
    assert out.rejects == []
    row = row_dict(out.rows[0])
    assert (row["site_id"], row["machine_id"], row["seq"], row["lat"]) == ("quarry-1", "haul_07", 3, -33.5)
    assert row["ts"] == datetime.fromtimestamp(NOW, UTC)
    assert row["engine_on"] is True and row["extra"] is None
    assert out.sites == {"quarry-1"}


def test_rfc3339_ts_absent_seq_and_unknown_fields_go_to_extra() -> None:
    out = one({"ts": "2024-05-01T10:00:00.5Z", "speed_kmh": 12, "tyre_psi": [100, 101], "note": None})
    row = row_dict(out.rows[0])
    assert row["ts"] == datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert row["seq"] == -1
    assert row["speed_kmh"] == 12.0
    assert orjson.loads(row["extra"]) == {"tyre_psi": [100, 101], "note": None}


def test_array_keeps_good_samples_and_rejects_bad_ones_individually() -> None:
    samples = [{"ts": NOW, "seq": i, "lat": 10.0} for i in range(5)]
    samples[3]["lat"] = 91.2
    samples[4] = "oops"
    out = one(samples)
    assert [r[3] for r in out.rows] == [0, 1, 2]
    assert [r.reason for r in out.rejects] == [
        "sample 3: lat 91.2 is outside -90..90",
        "sample 4: is a string, not a sample object",
    ]
    assert orjson.loads(out.rejects[0].payload)["lat"] == 91.2  # the raw sample is kept
    assert out.rejects[0].site_id == "quarry-1" and out.rejects[0].machine_id == "haul_07"


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ({"seq": 1}, "ts is missing"),
        ({"ts": "yesterday"}, "ts 'yesterday' is not an RFC 3339 time"),
        ({"ts": "2024-05-01T10:00:00"}, "has no UTC offset"),
        ({"ts": NOW + 2 * 86400}, "more than 1 day in the future"),
        ({"ts": 100.0}, "before 2000-01-01"),
        ({"ts": "1999-12-31T23:59:59Z"}, "before 2000-01-01"),
        ({"ts": True}, "ts is a boolean"),
        ({"ts": NOW, "lon": 181}, "lon 181 is outside -180..180"),
        ({"ts": NOW, "fuel_used_l": -5.0}, "fuel_used_l -5 is negative"),
        ({"ts": NOW, "speed_kmh": "fast"}, "speed_kmh is a string, not a number"),
        ({"ts": NOW, "seq": -2}, "seq -2 is not an integer"),
        ({"ts": NOW, "seq": 1.5}, "seq 1.5 is not an integer"),
        ({"ts": NOW, "engine_on": 1}, "engine_on is an integer, not true or false"),
        ({"ts": NOW, "machine_id": "X"}, "machine_id 'X' in the payload disagrees with topic machine 'haul_07'"),
        ({"ts": NOW, "site_id": "other"}, "site_id 'other' in the payload disagrees with topic site 'quarry-1'"),
        ({"ts": NOW, "comment": "a\u0000b"}, "NUL character"),
    ],
)
def test_invalid_samples_are_rejected_with_a_reason_naming_the_field(sample: dict, reason: str) -> None:
    out = one(sample)
    assert out.rows == []
    assert len(out.rejects) == 1
    assert reason in out.rejects[0].reason


@pytest.mark.parametrize("reading", [-99, -99.0, -0.5])
def test_a_negative_payload_is_a_load_cell_sentinel_stored_as_absent(reading: float) -> None:
    out = one([{"ts": NOW, "lat": 59.5, "speed_kmh": 12.0, "payload_kg": reading},
               {"ts": NOW + 1, "lat": 59.5, "payload_kg": 41_200.0}])
    assert out.rejects == []
    first, second = (row_dict(row) for row in out.rows)
    assert first["lat"] == 59.5 and first["speed_kmh"] == 12.0  # position and speed kept
    assert first["payload_kg"] is None and orjson.loads(first["extra"]) == {"payload_kg_invalid": reading}
    assert second["payload_kg"] == 41_200.0 and second["extra"] is None


def test_nan_and_infinity_are_rejected() -> None:
    out = one(b'{"ts": 1700000000, "lat": NaN}')
    assert out.rejects[0].reason.startswith("not valid JSON")
    out = one(b'{"ts": 1700000000, "lat": 1e400}')
    assert out.rejects[0].reason.startswith("not valid JSON")


def test_payload_matching_topic_ids_is_accepted() -> None:
    out = one({"ts": NOW, "site_id": "quarry-1", "machine_id": "haul_07"})
    assert len(out.rows) == 1 and out.rows[0][13] is None


def test_oversize_payload_is_rejected_before_parsing() -> None:
    raw = b"[" + b",".join([b'{"ts": 1700000000}'] * 20000) + b"]"
    out = decode(TOPIC, raw, max_payload_bytes=262144)
    assert out.rejects[0].reason == f"payload is {len(raw)} bytes, over the 262144-byte limit"
    assert out.rejects[0].payload == raw


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"42", "payload is an integer; send one sample object or an array of them"),
        (b"[]", "payload is an empty array"),
    ],
)
def test_payloads_that_are_not_samples(payload: bytes, reason: str) -> None:
    out = one(payload)
    assert out.rows == [] and reason in out.rejects[0].reason


@pytest.mark.parametrize(
    "topic",
    [
        "sites/a/machines/b/other",
        "sites/a b/machines/m/telemetry",
        "sites/a/machines/" + "m" * 65 + "/telemetry",
        "site/a/machines/b/telemetry",
        "sites/a/machines/b/c/telemetry",
    ],
)
def test_topics_outside_the_contract_are_rejects(topic: str) -> None:
    out = one({"ts": NOW}, topic=topic)
    assert out.rows == [] and out.rejects[0].site_id is None
    assert "topic" in out.rejects[0].reason
    assert isinstance(parse_topic(topic), str)


def test_partition_owner_is_stable_per_machine_and_spreads_the_fleet() -> None:
    # crc32 is fixed by zlib: the same owner in every process, on every host and Python version
    assert owner("sites/q/machines/HX-01/telemetry", 3) == zlib.crc32(b"q/HX-01") % 3
    assert owner("sites/q/machines/HX-01/telemetry", 1) == 0
    for count in (2, 3, 5):
        for i in range(50):  # a machine's telemetry, birth and status go to the same worker
            assert len({owner(f"sites/q/machines/m{i}/{kind}", count) for kind in KINDS}) == 1
    spread = Counter(owner(f"sites/q/machines/S{i:04d}/telemetry", 3) for i in range(1000))
    assert sorted(spread) == [0, 1, 2] and min(spread.values()) > 280, spread
    assert owner("not/a/contract/topic/at/all", 4) in range(4)  # malformed topics still have one owner
    assert Partition(1, 3).owns("sites/q/machines/HX-01/telemetry") == (zlib.crc32(b"q/HX-01") % 3 == 1)


@pytest.mark.parametrize("text", ["3/3", "0/0", "-1/2", "1", "a/b", "1/2/3", "²/3", "1/2000"])
def test_partition_spec_must_be_index_of_count(text: str) -> None:
    with pytest.raises(ValueError):
        parse_partition(text)
    with pytest.raises(ConfigError, match="SITEPULSE_INGEST_PARTITION"):
        load_settings(ingest_partition=text)
    assert parse_partition(" 2/3 ") == Partition(2, 3)
    assert load_settings(ingest_partition="02/3").ingest_partition == "2/3"
    with pytest.raises(ConfigError, match="SITEPULSE_INGEST_PARTITION"):
        load_settings(ingest_partition=f"1/4,{text}")  # every part of a changing-COUNT spec is checked


def test_partition_spec_while_the_number_of_workers_changes() -> None:
    assert parse_partitions("1/3,1/4,1/3") == (Partition(1, 3), Partition(1, 4))
    assert load_settings(ingest_partition=" 1/3, 01/4").ingest_partition == "1/3,1/4"


def test_birth_and_status() -> None:
    birth = one(
        {"kind": "hauler", "model": "CAT 777G", "rated_payload_kg": 90700, "axles": 2}, topic="sites/s/machines/m/birth"
    )
    assert birth.births[0].kind == "hauler" and birth.births[0].rated_payload_kg == 90700
    assert birth.births[0].attributes == {"axles": 2}
    bad = one({"kind": "spaceship"}, topic="sites/s/machines/m/birth")
    assert bad.births == [] and bad.rejects[0].reason.startswith("birth: kind")
    negative = one({"kind": "loader", "rated_payload_kg": -1}, topic="sites/s/machines/m/birth")
    assert negative.rejects[0].reason.startswith("birth: rated_payload_kg")
    assert one(b"online", topic="sites/s/machines/m/status").statuses[0].status == "online"
    assert one(b'"offline"', topic="sites/s/machines/m/status").statuses[0].status == "offline"
    assert "not 'online' or 'offline'" in one(b"maybe", topic="sites/s/machines/m/status").rejects[0].reason
    cleared = one(b"", topic="sites/s/machines/m/birth")
    assert cleared.births == [] and cleared.rejects == []


def test_lean_publish_decoding_matches_paho() -> None:
    from paho.mqtt import _packet
    from paho.mqtt.client import MQTTv5, MQTTv311

    from ingest.consumer import decode_publish

    topic, payload = "sites/s1/machines/m1/telemetry", b'{"ts": 1}'
    for qos in (0, 1):
        for v5 in (False, True):
            body = len(topic).to_bytes(2, "big") + topic.encode()
            body += (513).to_bytes(2, "big") if qos else b""
            body += b"\x00" if v5 else b""
            body += payload
            header = 0x30 | (qos << 1)
            paho = _packet.decode_publish(header, bytearray(body), MQTTv5 if v5 else MQTTv311)
            ours = decode_publish(header, bytearray(body), v5)
            assert ours == (paho.topic.decode(), paho.payload, paho.mid, paho.qos)
            assert type(ours[1]) is bytes
    # anything unusual goes to paho's own path: QoS 2, v5 properties, invalid UTF-8 topic, truncated
    assert decode_publish(0x34, b"\x00\x01t\x00\x01x", False) is None
    assert decode_publish(0x32, b"\x00\x01t\x00\x01\x02\x01\x01x", True) is None
    assert decode_publish(0x32, b"\x00\x01\xff\x00\x01x", False) is None
    assert decode_publish(0x32, b"\x00\x09t", False) is None
