"""The column decoder and the numpy binary COPY agree with the per-sample rules and with PostgreSQL."""

from __future__ import annotations

import struct
import time
from datetime import UTC, datetime

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.columns import epoch_to_micros, rfc3339_utc_to_micros, snap, snap_columns, to_micros
from ingest.contract import FLOAT_NAMES, RESOLUTION, Decoded, Decoder, checked_sample_row
from ingest.writer import TelemetryWriter
from tests.ingest.test_property import dumps, samples

NOW = time.time()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(946_684_800, NOW + 86_400) | st.integers(946_684_800, int(NOW)), min_size=1, max_size=20))
def test_epoch_to_micros_rounds_as_datetime_does(values: list[float]) -> None:
    import numpy as np

    got = epoch_to_micros(np.array(values, np.float64)).tolist()
    assert got == [to_micros(datetime.fromtimestamp(v, UTC)) for v in values]


machines = st.sampled_from(["m1", "machine-0042", "x"])
messages = st.tuples(machines, st.lists(samples.map(lambda s: orjson.loads(dumps(s))), min_size=1, max_size=4),
                     st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, min_size=1, max_size=8))
def test_a_batch_decodes_as_each_sample_would_alone(batch: list[tuple[str, list[dict], bool]]) -> None:
    """Whole-batch column checks give the rows and reasons of checked_sample_row, sample by sample."""
    decoder, out = Decoder(), Decoded()
    expected_rows, expected_reasons = [], []
    received = datetime.now(UTC)
    for machine, body, single in batch:
        body = body[:1] if single else body
        decoder.decode_into(out, f"sites/prop/machines/{machine}/telemetry", dumps(body[0] if single else body),
                            received)
        for index, sample in enumerate(body):
            row = checked_sample_row(sample, "prop", machine, received, time.time())
            if type(row) is str:
                expected_reasons.append(row if single else f"sample {index}: {row}")
            else:
                expected_rows.append(row)
    assert out.rows == expected_rows
    assert [r.reason for r in out.rejects] == expected_reasons


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(messages, min_size=1, max_size=8))
def test_copy_bytes_round_trip_through_postgresql(fresh_database_url: str, batch: list) -> None:
    """Nulls, extra fields, ids of different lengths: what PostgreSQL stores is exactly the decoded rows."""
    decoder, out = Decoder(), Decoded()
    for n, (machine, body, _) in enumerate(batch):
        body = [dict(s, seq=n * 10 + i) for i, s in enumerate(body)]  # distinct keys: the direct COPY
        decoder.decode_into(out, f"sites/rt/machines/{machine}/telemetry", dumps(body), datetime.now(UTC))
    writer = TelemetryWriter(fresh_database_url)
    writer.open()
    try:
        with writer.conn.transaction():
            writer.conn.execute("TRUNCATE telemetry")
        writer.write(out)
    finally:
        writer.close()
    with psycopg.connect(fresh_database_url) as conn:
        stored = conn.execute(
            "SELECT site_id, machine_id, ts, seq, received_at, lat, lon, speed_kmh, heading_deg, payload_kg,"
            " fuel_used_l, engine_hours, engine_on, extra::text FROM telemetry ORDER BY machine_id, ts, seq"
        ).fetchall()

    def norm(row: tuple) -> tuple:
        extra = None if row[13] is None else orjson.loads(row[13])
        return (*row[:13], extra)

    assert sorted(map(norm, stored), key=repr) == sorted(map(norm, out.rows), key=repr)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=False), min_size=7, max_size=7), st.sampled_from(FLOAT_NAMES))
def test_stored_values_lie_on_the_contract_grid(values: list[float], name: str) -> None:
    """Whole columns and single values snap alike, to within half a step, and a snapped value stays put."""
    import numpy as np

    step = RESOLUTION[name]
    column = np.array(values, np.float64).reshape(7, 1)
    snap_columns(column, np.array([step]))
    for before, after in zip(values, column[:, 0].tolist(), strict=True):
        if before != before:
            assert after != after
            continue
        assert struct.pack("<d", after) == struct.pack("<d", snap(before, step))  # bit for bit: -0.0 is not 0.0
        assert snap(after, step) == after
        assert abs(after - before) <= step / 2 or abs(before) >= 2.0**52 * step


def _spellings(moment: datetime, digits: int, zone: str) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    return text + zone


rfc3339 = st.builds(_spellings, st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)), st.integers(0, 7),
                    st.sampled_from(["Z", "+00:00", "+02:00", "-00:00", "z", ""]))
texts = rfc3339 | rfc3339.map(lambda t: t.replace("T", " ")) | rfc3339.map(lambda t: t[:-3] + "60Z") | st.text(
    max_size=30)


@settings(max_examples=500, deadline=None)
@given(st.lists(texts, min_size=1, max_size=12))
def test_rfc3339_column_parse_agrees_with_fromisoformat(values: list[str]) -> None:
    """Whatever the column parser accepts, fromisoformat reads as the same UTC instant."""
    micros, ok = rfc3339_utc_to_micros(values)
    for text, us, accepted in zip(values, micros.tolist(), ok.tolist(), strict=True):
        if accepted:
            parsed = datetime.fromisoformat(text)
            assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
            assert us == to_micros(parsed), text


def test_rfc3339_column_parse_takes_the_usual_shapes() -> None:
    usual = ["2026-12-05T06:00:01.000Z", "2024-02-29T23:59:59Z", "2026-12-05T06:00:01.123456+00:00",
             "2026-12-05T06:00:01.5Z"]
    micros, ok = rfc3339_utc_to_micros(usual)
    assert ok.all() and micros.tolist() == [to_micros(datetime.fromisoformat(t)) for t in usual]
    unusual = ["2023-02-29T00:00:00Z", "2026-12-05T06:00:01+01:00", "2026-12-05 06:00:01Z", "2026-12-05T24:00:00Z",
               "2026-12-05T06:00:01.1234567Z", "2026-12-05T06:00:01", "2026-13-05T06:00:01Z", "2026-12-05T06:00:01é"]
    assert not rfc3339_utc_to_micros(unusual)[1].any()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(rfc3339 | texts, st.floats(-100, 100)), min_size=1, max_size=10))
def test_a_batch_with_string_times_decodes_as_each_sample_would_alone(samples_: list[tuple[str, float]]) -> None:
    decoder, out, received = Decoder(), Decoded(), datetime.now(UTC)
    body = [{"ts": ts, "lat": lat} for ts, lat in samples_]
    decoder.decode_into(out, "sites/prop/machines/m1/telemetry", dumps(body), received)
    expected = [checked_sample_row(s, "prop", "m1", received, time.time()) for s in body]
    assert out.rows == [r for r in expected if type(r) is not str]
    assert [r.reason for r in out.rejects] == [f"sample {i}: {r}" for i, r in enumerate(expected) if type(r) is str]


@pytest.mark.parametrize("ts", ["2026-01-05T06:01:05.097Z", 1767592865.097])
def test_one_bad_seq_leaves_its_neighbours_seq_alone(ts: str | float) -> None:
    """A batch holding a string seq (a reject) keeps every other sample's seq (it once stored them as -1)."""
    decoder, out, received = Decoder(), Decoded(), datetime.now(UTC)
    for machine, seq in (("a", 65), ("b", "65"), ("c", None), ("d", 7)):
        decoder.decode_into(out, f"sites/prop/machines/{machine}/telemetry", dumps({"ts": ts, "seq": seq}), received)
    assert [(row[1], row[3]) for row in out.rows] == [("a", 65), ("c", -1), ("d", 7)]
    assert [r.reason for r in out.rejects] == ["seq '65' is not an integer in 0..2^63-1"]
