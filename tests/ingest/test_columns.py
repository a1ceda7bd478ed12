"""The column decoder and the numpy binary COPY agree with the per-sample rules and with PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.columns import epoch_to_micros, to_micros
from ingest.contract import Decoded, Decoder, checked_sample_row
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
