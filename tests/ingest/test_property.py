"""Property tests: any bytes or JSON is either stored or rejected, and decoding never raises."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.contract import Decoded, Decoder, decode
from ingest.writer import TelemetryWriter

TOPIC = "sites/prop/machines/m1/telemetry"
NOW = time.time()

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_values = {
    "ts": st.floats(0, 2 * NOW)
    | st.integers(0, 2 * int(NOW))
    | st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC) | st.none()
    ).map(lambda d: d.isoformat())
    | json_scalars,
    "seq": st.integers(-3, 2**64) | json_scalars,
    "lat": st.floats(-100, 100) | json_scalars,
    "lon": st.floats(-200, 200) | json_scalars,
    "payload_kg": st.floats(-10, 1e6) | json_scalars,
    "engine_on": st.booleans() | json_scalars,
    "machine_id": st.sampled_from(["m1", "m2"]) | json_scalars,
}
samples = st.fixed_dictionaries({}, optional={**field_values, "speed_kmh": json_scalars, "x": json_values})


def dumps(value: object) -> bytes:
    """JSON as a device might send it (big integers included, which orjson cannot write)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(dumps),
    samples.map(dumps),
    st.lists(samples | json_values, max_size=6).map(dumps),
)


def accounted(raw: bytes) -> tuple[Decoded, int]:
    out = decode(TOPIC, raw)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return out, 1
    return out, len(body) if isinstance(body, list) and body else 1


@settings(max_examples=400, deadline=None)
@given(payloads)
def test_every_input_is_stored_or_rejected_and_never_raises(raw: bytes) -> None:
    out, expected = accounted(raw)
    assert len(out.rows) + len(out.rejects) == expected
    for reject in out.rejects:
        assert reject.reason and "\n" not in reject.reason
    for row in out.rows:
        assert row[2].tzinfo is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(payloads, min_size=1, max_size=5))
def test_whatever_decodes_is_accepted_by_the_database(database_url: str, raws: list[bytes]) -> None:
    decoder = Decoder()
    out = Decoded()
    for raw in raws:
        decoder.decode_into(out, TOPIC, raw, datetime.now(UTC))
    writer = TelemetryWriter(database_url)
    writer.open()
    try:
        result = writer.write(out)
    finally:
        writer.close()
    assert result.stored + result.duplicates == len(out.rows)


@pytest.fixture(autouse=True)
def _no_leftover_connections(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT 1")
