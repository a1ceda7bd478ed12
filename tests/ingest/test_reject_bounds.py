"""A reject keeps the start of its payload and the payload's length, not the payload (issue 35: whole payloads of
up to 1 MiB were kept, so a device sending bad messages filled ingest_rejects a megabyte at a time)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import psycopg

from ingest.contract import Decoded, Decoder
from ingest.writer import REJECT_PAYLOAD_KEPT, TelemetryWriter

TOPIC = "sites/big/machines/m1/telemetry"


def _write(url: str, payloads: list[bytes]) -> None:
    decoder, out = Decoder(), Decoded()
    for payload in payloads:
        decoder.decode_into(out, TOPIC, payload, datetime.now(UTC))
    with TelemetryWriter(url) as writer:
        writer.write(out)


def test_a_reject_keeps_a_bounded_prefix_and_the_original_size(fresh_database_url: str) -> None:
    mebibyte = b'{"ts": "' + b"x" * (1024 * 1024 - 10) + b'"}'
    same_start = mebibyte[:-3] + b'y"}'  # differs only after the part kept: still its own reject
    small = b'{"ts": "yesterday", "lat": 91}'
    _write(fresh_database_url, [mebibyte, same_start, small])
    _write(fresh_database_url, [mebibyte])  # re-delivered: stored once
    with psycopg.connect(fresh_database_url) as conn:
        rows = conn.execute("SELECT payload, payload_bytes, reason FROM ingest_rejects ORDER BY id").fetchall()
        stored = conn.execute("SELECT sum(octet_length(payload)) FROM ingest_rejects").fetchone()[0]
    assert [bytes(r[0]) for r in rows] == [mebibyte[:REJECT_PAYLOAD_KEPT]] * 2 + [small]
    assert [r[1] for r in rows] == [len(mebibyte), len(same_start), len(small)]
    assert rows[0][2] == f"payload is {len(mebibyte)} bytes, over the 262144-byte limit"
    assert stored == 2 * REJECT_PAYLOAD_KEPT + len(small)  # not 2 MiB
    assert bytes(rows[0][0]).decode().startswith('{"ts": "xxx')  # still readable where a person looks


def test_a_rejected_sample_of_an_array_is_kept_whole_when_small(fresh_database_url: str) -> None:
    sample = {"ts": datetime.now(UTC).timestamp(), "seq": 1, "lat": 91.0, "lon": 18.0}
    _write(fresh_database_url, [orjson.dumps([sample])])
    with psycopg.connect(fresh_database_url) as conn:
        payload, size = conn.execute("SELECT payload, payload_bytes FROM ingest_rejects").fetchone()
    assert orjson.loads(bytes(payload)) == sample and size == len(bytes(payload))
