"""Exports: telemetry and declared service tables as streamed CSV and Parquet, site-scoped, recorded as usage."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ingest.contract import Decoded, Decoder
from ingest.writer import TelemetryWriter
from microservices.sdk import Outputs, Service
from registry import exports
from registry.api.app import create_app
from registry.api.state import state_of
from registry.tokens import create_token
from sitepulse.settings import load_settings

ADMIN = "export-admin-token-0123456789abcdef012345"
SITE = ("name: Export pit\nmachines: [{id: H1, kind: hauler, rated_payload_kg: 28000}]\n"
        "zones:\n  - {id: crusher, type: dump, name: Primary crusher, polygon: [[18.0, 59.0], [18.001, 59.0], "
        "[18.001, 59.001], [18.0, 59.001]]}\n")
START = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = 1200


class Loads(Service):
    name = "loads"
    tables = ("loads.tally", "loads.never_created", "loads.visits")

    def process(self, batch: Any, state: dict, settings: BaseModel) -> tuple[Outputs, dict]:
        return Outputs(), state


@pytest.fixture(scope="module")
def client(database_url: str, mqtt_broker: Any) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(database_url, mqtt_broker.url, services={"loads": Loads()},
                     settings=load_settings(admin_token=ADMIN))
    writer = TelemetryWriter(database_url)
    writer.open()
    batch, decoder = Decoded(), Decoder()
    for i in range(ROWS):
        sample = {"ts": (START + timedelta(seconds=i)).timestamp(), "seq": i, "lat": 59.0, "lon": 18.0 + i * 1e-6,
                  "payload_kg": float(i), "engine_on": True, "note": "x"}
        decoder.decode_into(batch, "sites/pit/machines/H1/telemetry", json.dumps(sample).encode(), START)
    writer.write(batch)
    writer.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        token = create_token(conn, "pit manager", ["pit"]).token
        conn.execute("CREATE SCHEMA loads; CREATE TABLE loads.tally (site_id text, run_seq bigint, at timestamptz,"
                     " tonnes double precision, info jsonb)")
        conn.execute("INSERT INTO loads.tally SELECT s, 1, %s + n * interval '1 hour', n, '{\"a\": 1}'"
                     " FROM generate_series(0, 9) n, unnest(array['pit', 'other']) s", (START,))
        conn.execute("CREATE TABLE loads.visits (site_id text, run_seq bigint, entered_at timestamptz, zone text,"
                     " dump_zone text)")
        conn.execute("INSERT INTO loads.visits VALUES ('pit', 1, %s, 'crusher', 'crusher'),"
                     " ('pit', 1, %s, 'undrawn', NULL)", (START, START + timedelta(minutes=1)))
    with TestClient(app) as c:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for site in ("pit", "other"):
            assert c.put(f"/api/v1/sites/{site}", content=SITE,
                         headers={**admin, "Content-Type": "application/yaml"}).status_code == 201
        assert c.put("/api/v1/sites/pit/services/loads", json={"enabled": True}, headers=admin).status_code == 200
        yield c, {"Authorization": f"Bearer {token}"}


RANGE = f"from={START.isoformat().replace('+00:00', 'Z')}&to={(START + timedelta(days=1)).isoformat()[:19]}Z"


def test_telemetry_csv_streams_every_row_in_order(client: tuple[TestClient, dict[str, str]]) -> None:
    c, manager = client
    r = c.get(f"/api/v1/sites/pit/export/telemetry?{RANGE}&format=csv", headers=manager)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == ROWS and rows[0]["machine_id"] == "H1" and float(rows[-1]["payload_kg"]) == ROWS - 1
    assert json.loads(rows[0]["extra"]) == {"note": "x"}


def test_telemetry_parquet_is_written_in_row_groups(client: tuple[TestClient, dict[str, str]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    c, manager = client
    monkeypatch.setattr(exports, "CHUNK_ROWS", 500)
    r = c.get(f"/api/v1/sites/pit/export/telemetry?{RANGE}&format=parquet", headers=manager)
    assert r.status_code == 200, r.text
    parquet = pq.ParquetFile(io.BytesIO(r.content))
    assert parquet.metadata.num_rows == ROWS and parquet.metadata.num_row_groups == 3  # 500 + 500 + 200
    table = parquet.read()
    assert table.column("payload_kg").to_pylist()[:3] == [0.0, 1.0, 2.0]
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"


def test_parquet_chunks_are_yielded_per_row_group(database_url: str) -> None:
    from psycopg_pool import ConnectionPool

    query = exports.build_query("public", "telemetry", [("machine_id", "text"), ("ts", "timestamp with time zone"),
                                                        ("payload_kg", "double precision")], "pit", None, None)
    with ConnectionPool(database_url, min_size=1, max_size=1) as pool:
        chunks = list(exports.parquet_chunks(pool, query, chunk_rows=100))
    assert len(chunks) >= ROWS // 100  # streamed as it goes, not one blob at the end
    assert pq.ParquetFile(io.BytesIO(b"".join(chunks))).metadata.num_rows == ROWS


def test_service_table_export_only_declared_and_scoped(client: tuple[TestClient, dict[str, str]]) -> None:
    c, manager = client
    r = c.get(f"/api/v1/sites/pit/export/loads/tally?{RANGE}", headers=manager)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 10 and {row["site_id"] for row in rows} == {"pit"} and "run_seq" not in rows[0]
    r = c.get(f"/api/v1/sites/pit/export/loads/tally?{RANGE}&format=parquet", headers=manager)
    assert pq.read_table(io.BytesIO(r.content)).column("info").to_pylist()[0] == '{"a":1}'
    assert c.get("/api/v1/sites/pit/export/loads/secrets", headers=manager).status_code == 404
    assert c.get("/api/v1/sites/pit/export/loads/never_created", headers=manager).status_code == 404
    assert c.get("/api/v1/sites/pit/export/nothing/tally", headers=manager).status_code == 404
    assert c.get(f"/api/v1/sites/other/export/loads/tally?{RANGE}", headers=manager).status_code == 404
    assert c.get(f"/api/v1/sites/other/export/telemetry?{RANGE}", headers=manager).status_code == 404


def test_zone_columns_are_exported_with_the_drawn_names(client: tuple[TestClient, dict[str, str]]) -> None:
    c, manager = client
    rows = list(csv.DictReader(io.StringIO(c.get(f"/api/v1/sites/pit/export/loads/visits?{RANGE}",
                                                   headers=manager).text)))
    assert [(r["zone"], r["zone_name"], r["dump_zone"], r["dump_zone_name"]) for r in rows] == [
        ("crusher", "Primary crusher", "crusher", "Primary crusher"), ("undrawn", "undrawn", "", "")]
    table = pq.read_table(io.BytesIO(c.get(f"/api/v1/sites/pit/export/loads/visits?{RANGE}&format=parquet",
                                           headers=manager).content))
    assert table.column("zone_name").to_pylist() == ["Primary crusher", "undrawn"]


def test_exports_are_usage_events(client: tuple[TestClient, dict[str, str]], database_url: str) -> None:
    c, manager = client
    assert c.get(f"/api/v1/sites/pit/export/telemetry?{RANGE}", headers=manager).status_code == 200
    state_of(c.app).usage.flush()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT principal, detail ->> 'what', detail ->> 'format' FROM usage_events"
                            " WHERE site_id = 'pit' AND action = 'export'").fetchall()
    assert ("pit manager", "telemetry", "csv") in rows


@pytest.mark.parametrize("offset", ["+16:00", "-22:00"])
def test_offsets_postgresql_refuses_are_normalised_not_a_broken_stream(
    client: tuple[TestClient, dict[str, str]], offset: str
) -> None:
    """RFC 3339 allows offsets beyond PostgreSQL's +-15:59 (found by schemathesis): times are made UTC first."""
    c, manager = client
    start = (START - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S") + offset
    r = c.get("/api/v1/sites/pit/export/telemetry", params={"from": start, "format": "csv"}, headers=manager)
    assert r.status_code == 200, r.text
    assert r.text.startswith("site_id,machine_id,ts")
    far = c.get("/api/v1/sites/pit/export/telemetry", params={"from": "0001-01-01T00:00:00+16:00"}, headers=manager)
    assert far.status_code == 422  # issue 35: every time out of [1970, 2200) is one 422 naming the parameter
    assert far.json()["detail"].startswith("query parameter 'from' must lie between 1970-01-01 and 2200-01-01")
