"""The TimescaleDB contract: every migration and the application's real queries on native TimescaleDB.

The engine is TimescaleDB 2.23 preloaded into Debian's PostgreSQL 15 (``timescaledb_postgres`` in
tests/conftest.py), with its background scheduler. What runs here is the application's own code, not
copies of its SQL:

* ``sitepulse.migrations.upgrade`` with every installed owner's migrations (entry points, so a new
  service's schema is covered the day it is installed) plus a contract service of this module;
* the ingest writer (``TelemetryWriter.write``: binary COPY into the hypertable, de-duplication,
  rejects, births, status, NOTIFY), the reader (``read_new_telemetry`` watermarks with paging,
  ``read_telemetry_range``), the ingest metrics, on plain and on compressed chunks;
* TimescaleDB's own objects: hypertable, compression settings and policy, retention policy,
  continuous aggregate and its policy (``test_policies.py`` lets the scheduler run them);
* the service runner (``ServiceHost.step`` with replay after late samples, checkpoints, alerts);
* every GET route of the API (``create_app`` with every installed service plus the contract one);
* the usage writer, the status command's and the Grafana dashboard's SQL.

Add a package's extra queries to ``EXTRA_QUERIES``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from ingest import MIGRATIONS as INGEST_MIGRATIONS
from ingest.contract import Decoder
from ingest.metrics import IngestCounters, render_prometheus, save_counters
from ingest.reader import current_watermark, read_new_telemetry, read_telemetry_range
from ingest.writer import TelemetryWriter
from microservices.discovery import discover_services
from microservices.runner import ServiceHost, record_health
from microservices.sdk import Batch, Outputs, Service
from registry.api.app import create_app
from registry.usage import UsageRecorder
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import MigrationSource, discover_sources, upgrade
from sitepulse.settings import load_settings

from .conftest import decoded_messages

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
ADMIN_TOKEN = "timescaledb-contract-admin-token-0123456789"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)

# (package, name, sql, params): queries a package issues that no function below exercises.
# Each must run on TimescaleDB; a query naming a table that is not installed yet is skipped.
EXTRA_QUERIES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("ingest", "rollup per machine", "SELECT site_id, machine_id, bucket, samples, avg_speed_kmh, max_payload_kg"
     " FROM telemetry_1m WHERE site_id = %(site)s AND bucket >= %(start)s ORDER BY bucket", {}),
    ("ingest", "rejects per hour", "SELECT time_bucket(INTERVAL '1 hour', received_at) AS hour, count(*)"
     " FROM ingest_rejects GROUP BY 1 ORDER BY 1", {}),
    ("microservices", "lag per service", "SELECT service, site_id, now() - data_until AS lag"
     " FROM service_checkpoints ORDER BY service, site_id", {}),
    # positioning.track_last is kept by statement triggers with transition tables: run each of them
    ("positioning", "track_last on insert", "WITH t AS (INSERT INTO positioning.track (site_id, run_seq, machine_id,"
     " ts, state, jump, carried) SELECT %(site)s, n, 'M1', %(start)s + n * interval '5 s', 'idle', false, false"
     " FROM generate_series(1, 3) n RETURNING 1) SELECT count(*) FROM t", {}),
    ("positioning", "track_last on update", "WITH t AS (UPDATE positioning.track SET zone = 'load-a'"
     " WHERE site_id = %(site)s RETURNING 1) SELECT count(*) FROM t", {}),
    ("positioning", "track_last on replay", "WITH t AS (DELETE FROM positioning.track WHERE site_id = %(site)s"
     " AND run_seq > 1 RETURNING 1) SELECT count(*) FROM t", {}),
    ("positioning", "live map (divides by zero unless the triggers kept the newest point)",
     "SELECT 1 / count(*) FROM positioning.track_last WHERE site_id = %(site)s AND machine_id = 'M1'"
     " AND ts = %(start)s + interval '5 s' AND zone = 'load-a'", {}),
]


class ContractLoads(Service):
    """Writes every sample with a payload, alerts on heavy ones, and serves them on a route."""

    name = "contract-loads"
    summary = "TimescaleDB contract test service"
    consumes = ("payload_kg",)
    tables = ("contract_loads.loads",)
    migrations = HERE / "contract_service"

    def process(self, batch: Batch, state: dict, settings: object) -> tuple[Outputs, dict]:
        out = Outputs()
        rows = batch.telemetry[["machine_id", "ts", "seq", "payload_kg"]]
        rows = rows[rows["payload_kg"].notna()]
        if not rows.empty:
            out.write("loads", rows)
            heavy = rows[rows["payload_kg"] > 30_000]
            for machine, ts in heavy.groupby("machine_id")["ts"].min().items():
                out.alert(f"{machine}:heavy", f"{machine} carried over 30 t", machine_id=machine, at=ts)
        return out, {"steps": state.get("steps", 0) + 1}

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/loads")
        def loads(request: Request) -> dict[str, Any]:
            ctx = request.state.sitepulse
            rows = ctx.conn.execute(
                "SELECT machine_id, time_bucket(INTERVAL '1 hour', ts) AS hour, sum(payload_kg) AS kg"
                " FROM contract_loads.loads WHERE site_id = %s GROUP BY 1, 2 ORDER BY 1, 2",
                (ctx.site_id,),
            ).fetchall()
            return {"items": [{"machine_id": m, "hour": h.isoformat(), "kg": kg} for m, h, kg in rows],
                    "next_cursor": None}

        return router


CONTRACT_SOURCE = MigrationSource("contract-loads", HERE / "contract_service", order=1000)


@pytest.fixture(scope="module")
def contract_url(timescaledb_postgres: EmbeddedPostgres) -> str:
    """An empty database on the TimescaleDB cluster: the module applies the migrations itself."""
    return timescaledb_postgres.fresh_database("contract")


@pytest.fixture(scope="module")
def migrated(contract_url: str) -> list[str]:
    """Every installed owner's migrations plus the contract service's, applied once."""
    with psycopg.connect(contract_url, autocommit=True) as conn:
        applied = upgrade(conn, [*discover_sources(), CONTRACT_SOURCE])
        again = upgrade(conn, [*discover_sources(), CONTRACT_SOURCE])
    assert again == [], "a second upgrade must apply nothing"
    return applied


@pytest.fixture
def tsdb(contract_url: str, migrated: list[str]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(contract_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def writer(contract_url: str, migrated: list[str]) -> Iterator[TelemetryWriter]:
    """The real ingest writer with its own connection: binary COPY into the hypertable."""
    w = TelemetryWriter(contract_url)
    w.open()
    yield w
    w.close()


def test_every_migration_applies_with_the_timescaledb_flavour(
    migrated: list[str], tsdb: psycopg.Connection
) -> None:
    expected = {f"{s.owner}/{p.stem}" for s in [*discover_sources(), CONTRACT_SOURCE]
                for p in Path(s.directory).glob("*.sql") if not p.name.endswith(".postgres.sql")}
    assert set(migrated) == expected
    assert "ingest/0002_telemetry.timescaledb" in migrated
    flavors = {f for (f,) in tsdb.execute("SELECT DISTINCT flavor FROM sitepulse_migrations")}
    assert flavors == {"timescaledb"}
    version = tsdb.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    assert version and version[0].startswith("2.")


def test_telemetry_is_a_hypertable_with_compression_retention_and_a_continuous_aggregate(
    migrated: list[str], tsdb: psycopg.Connection
) -> None:
    dims = tsdb.execute(
        "SELECT column_name, time_interval FROM timescaledb_information.dimensions WHERE hypertable_name = 'telemetry'"
    ).fetchall()
    assert dims == [("ts", timedelta(days=1))]
    settings = tsdb.execute(
        "SELECT attname, segmentby_column_index, orderby_column_index FROM timescaledb_information.compression_settings"
        " WHERE hypertable_name = 'telemetry' ORDER BY coalesce(segmentby_column_index, 0), orderby_column_index"
    ).fetchall()
    assert [a for a, s, _ in settings if s is not None] == ["site_id", "machine_id"]
    assert [a for a, _, o in settings if o is not None] == ["ts", "seq"]
    jobs = {p: c for p, c in tsdb.execute(
        "SELECT proc_name, config FROM timescaledb_information.jobs WHERE hypertable_name IN ('telemetry')"
        " OR proc_name = 'policy_refresh_continuous_aggregate'"
    )}
    assert jobs["policy_compression"]["compress_after"] == "7 days"
    assert jobs["policy_retention"]["drop_after"] == "400 days"
    assert jobs["policy_refresh_continuous_aggregate"]["start_offset"] == "3 days"
    cagg = tsdb.execute(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates WHERE hypertable_name = 'telemetry'"
    ).fetchall()
    assert cagg == [("telemetry_1m",)]
    # the unique key includes the partitioning column, as TimescaleDB requires
    key = tsdb.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'telemetry_sample_key'"
    ).fetchone()[0]
    assert key == "UNIQUE (site_id, machine_id, ts, seq)"


def test_writer_stores_once_and_records_rejects_births_and_status(
    writer: TelemetryWriter, tsdb: psycopg.Connection
) -> None:
    assert writer.partitions.enabled is False  # the hypertable makes its own chunks
    batch = decoded_messages("w1", machines=3, per_machine=50, start=T0)
    decoder, now = Decoder(), datetime.now(UTC)
    decoder.decode_into(batch, "sites/w1/machines/M00/telemetry", b"{not json", now)
    decoder.decode_into(batch, "sites/w1/machines/M00/birth",
                        orjson.dumps({"kind": "hauler", "model": "A45G", "rated_payload_kg": 41000}), now)
    decoder.decode_into(batch, "sites/w1/machines/M00/status", b"online", now)
    first = writer.write(batch)
    assert (first.rows, first.stored, first.rejected) == (150, 150, 1)
    again = writer.write(decoded_messages("w1", machines=3, per_machine=60, start=T0))  # 150 of them seen before
    assert (again.rows, again.stored, again.duplicates) == (180, 30, 150)
    assert tsdb.execute("SELECT count(*) FROM telemetry WHERE site_id = 'w1'").fetchone()[0] == 180
    assert tsdb.execute("SELECT count(*) FROM ingest_rejects WHERE site_id = 'w1'").fetchone()[0] == 1
    machine = tsdb.execute("SELECT kind, rated_payload_kg, status FROM machines WHERE site_id = 'w1'").fetchone()
    assert machine == ("hauler", 41000.0, "online")
    chunks = tsdb.execute("SELECT count(*) FROM show_chunks('telemetry')").fetchone()[0]
    assert chunks >= 1


def test_reader_returns_every_committed_row_once_across_pages(
    writer: TelemetryWriter, tsdb: psycopg.Connection
) -> None:
    start_mark = current_watermark(tsdb)
    for part in range(3):
        writer.write(decoded_messages("r1", machines=2, per_machine=40, start=T0 + timedelta(minutes=part)))
    seen, mark, pages = [], start_mark, 0
    while True:
        frame, mark = read_new_telemetry(tsdb, after=mark, site_id="r1", limit=70)
        if frame.empty:
            break
        pages += 1
        seen.extend(zip(frame["machine_id"], frame["ts"], frame["seq"], strict=True))
    assert pages >= 3 and len(seen) == len(set(seen)) == 2 * 40 * 3  # 70-row pages: none split, none repeated
    frame, _ = read_new_telemetry(tsdb, after=mark, site_id="r1")
    assert frame.empty
    window = read_telemetry_range(tsdb, "r1", T0, T0 + timedelta(seconds=30), machine_ids=["M01"])
    assert len(window) == 30 and set(window["machine_id"]) == {"M01"}
    assert window["ts"].is_monotonic_increasing


def test_compressed_chunks_keep_the_unique_key_and_stay_readable(
    writer: TelemetryWriter, tsdb: psycopg.Connection
) -> None:
    old = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=20)
    writer.write(decoded_messages("c1", machines=2, per_machine=100, start=old))
    compressed = tsdb.execute(
        "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('telemetry', older_than => INTERVAL"
        " '10 days') c"
    ).fetchall()
    assert compressed
    state = tsdb.execute(
        "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks WHERE hypertable_name = 'telemetry'"
        " AND range_end <= now() - INTERVAL '10 days'"
    ).fetchone()[0]
    assert state is True
    redelivered = writer.write(decoded_messages("c1", machines=2, per_machine=110, start=old))
    assert (redelivered.stored, redelivered.duplicates) == (20, 200)
    window = read_telemetry_range(tsdb, "c1", old, old + timedelta(hours=1))
    assert len(window) == 220
    frame, _ = read_new_telemetry(tsdb, after=None, site_id="c1")
    assert len(frame) == 220


def test_the_site_xid_index_migration_applies_over_compressed_chunks(
    writer: TelemetryWriter, tsdb: psycopg.Connection
) -> None:
    """A deployment upgraded to ingest's 0006 already has compressed chunks: the index must build over them and
    both kinds of chunk stay readable by site and watermark."""
    old = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=30)
    writer.write(decoded_messages("x1", machines=2, per_machine=50, start=old))
    tsdb.execute("SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('telemetry', older_than =>"
                 " INTERVAL '10 days') c")
    tsdb.execute("DROP INDEX telemetry_site_xid_idx")  # as before 0006
    tsdb.execute("CREATE INDEX telemetry_xid_idx ON telemetry (xid)")
    migration = Path(INGEST_MIGRATIONS.directory) / "0006_telemetry_site_xid.sql"
    with tsdb.transaction():
        tsdb.execute(migration.read_text())
    indexes = {n for (n,) in tsdb.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'telemetry'")}
    assert "telemetry_site_xid_idx" in indexes and "telemetry_xid_idx" not in indexes
    writer.write(decoded_messages("x1", machines=2, per_machine=5, start=datetime.now(UTC) - timedelta(hours=1)))
    frame, _ = read_new_telemetry(tsdb, after=None, site_id="x1")
    assert len(frame) == 110


def test_service_runner_steps_replays_late_samples_and_records_health(
    writer: TelemetryWriter, tsdb: psycopg.Connection
) -> None:
    host = ServiceHost(ContractLoads())
    conn = tsdb
    conn.execute(
        "INSERT INTO service_enablement (site_id, service, enabled, enabled_at, stage)"
        " VALUES ('s1', 'contract-loads', true, now(), 'pilot')"
    )
    writer.write(decoded_messages("s1", machines=2, per_machine=30, start=T0 + timedelta(minutes=5), payload=29_990))
    assert host.catch_up(conn) == 60
    late = writer.write(decoded_messages("s1", machines=1, per_machine=10, start=T0))  # older than processed
    assert late.stored == 10
    result = host.step(conn, "s1")
    assert result.progressed and result.replayed
    record_health(conn, "contract-loads", None)
    loads = conn.execute("SELECT count(*), count(DISTINCT (machine_id, ts, seq)) FROM contract_loads.loads"
                         " WHERE site_id = 's1'").fetchone()
    assert loads == (70, 70)
    cp = conn.execute("SELECT rows_processed, replays, data_until FROM service_checkpoints"
                      " WHERE service = 'contract-loads' AND site_id = 's1'").fetchone()
    assert cp[1] == 1 and cp[2] == T0 + timedelta(minutes=5, seconds=29)
    alerts = conn.execute("SELECT count(*) FROM service_alerts WHERE service = 'contract-loads'").fetchone()[0]
    assert alerts == 2  # one per machine over 30 t, stored once despite the replay
    assert conn.execute("SELECT status FROM service_health WHERE service = 'contract-loads'").fetchone()[0] == "ok"


def test_every_get_route_of_the_api_answers_on_timescaledb(
    writer: TelemetryWriter, contract_url: str, mqtt_broker: Any
) -> None:
    writer.write(decoded_messages("api1", machines=1, per_machine=20, start=T0, payload=35_000))
    services = {**discover_services(), "contract-loads": ContractLoads()}
    settings = load_settings(admin_token=ADMIN_TOKEN)
    app = create_app(contract_url, mqtt_broker.url, services=services, settings=settings, track_usage=False)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    site_yaml = "name: Contract pit\nmachines:\n  - {id: M00, kind: hauler, model: A45G, rated_payload_kg: 41000}\n"
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        response = client.put("/api/v1/sites/api1", content=site_yaml,
                              headers={**admin, "Content-Type": "application/yaml"})
        assert response.status_code in (200, 201), response.text
        response = client.put("/api/v1/sites/api1/services/contract-loads", json={"enabled": True}, headers=admin)
        assert response.status_code == 200, response.text
        loads = client.get("/api/v1/sites/api1/contract-loads/loads", headers=admin)
        assert loads.status_code == 200, loads.text
        failures = []
        for path, operations in app.openapi()["paths"].items():
            if "get" not in operations or "{" in path.replace("{site_id}", "").replace("{page}", ""):
                continue
            url = path.replace("{site_id}", "api1").replace("{page}", "1")
            params = {"from": (T0 - timedelta(days=1)).isoformat(), "to": (T0 + timedelta(days=1)).isoformat()}
            if path.endswith("/evaluation") or "{site_id}" not in path:
                params["site_id"] = "api1"
            if path.endswith("/stream"):
                params["max_s"] = 1  # a live stream would hold the test until it ends
            answer = client.get(url, params=params, headers=admin)
            if answer.status_code >= 500:
                failures.append(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        metrics = client.get("/metrics", headers=admin)
        assert metrics.status_code == 200 and "sitepulse_" in metrics.text
    assert failures == []


def test_usage_events_are_written(contract_url: str, migrated: list[str]) -> None:
    recorder = UsageRecorder(contract_url, flush_interval=0.05)
    recorder.start()
    for n in range(25):
        recorder.record("u1", "contract-loads", "token:1", "route", {"n": n})
    assert recorder.close(timeout=30)
    with psycopg.connect(contract_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM usage_events WHERE site_id = 'u1'").fetchone()[0] == 25


def test_metrics_status_dashboard_and_extra_queries(writer: TelemetryWriter, tsdb: psycopg.Connection) -> None:
    counters = IngestCounters(received_messages=10, stored_rows=9, rejected=1)
    save_counters(tsdb, "contract:1:0", counters)
    text = render_prometheus(tsdb)
    assert 'sitepulse_ingest_stored_rows_total{worker="contract:1:0"} 9' in text

    from stack.status import collect_status

    status = collect_status(tsdb)
    assert status.flavor == "timescaledb"
    storage = status.storage
    assert storage is not None and storage.engine.startswith("TimescaleDB 2.") and storage.warning is None
    assert storage.chunks >= storage.compressed_chunks >= 1  # test_compressed_chunks_... compressed some
    assert storage.compression_ratio is not None and storage.compression_ratio > 1
    assert storage.telemetry_bytes > 0 and "compressed" in storage.describe()
    assert {"compress after 7 days", "drop after 400 days"} <= set(storage.policies)
    assert any(p.startswith("refresh telemetry_1m") for p in storage.policies)
    assert any(w.worker_id == "contract:1:0" and w.stored == 9 for w in status.workers)

    params = {"site": "r1", "start": T0, "end": T0 + timedelta(days=1)}
    for package, name, sql, extra in [*EXTRA_QUERIES, *_dashboard_queries()]:
        missing = _missing_relation(tsdb, sql)
        if missing:
            continue  # e.g. weight_loading.cycles before that service is installed
        try:
            tsdb.execute(sql, {**params, **extra}).fetchall()
        except psycopg.Error as exc:
            pytest.fail(f"{package}: {name}: {exc}")


def _missing_relation(conn: psycopg.Connection, sql: str) -> str | None:
    for schema, table in re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)\.([a-z_0-9]+)", sql, re.I):
        if conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()[0] is None:
            return f"{schema}.{table}"
    return None


def _dashboard_queries() -> list[tuple[str, str, str, dict[str, Any]]]:
    """The Grafana dashboard's SQL panels, with Grafana's time macros bound to parameters."""
    path = ROOT / "deploy" / "grafana" / "dashboards" / "sitepulse.json"
    dashboard = json.loads(path.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if "rawSql" in target:
                sql = (target["rawSql"].replace("$__timeFrom()", "%(start)s").replace("$__timeTo()", "%(end)s")
                       .replace("$site", "%(site)s").replace("'%(site)s'", "%(site)s"))
                queries.append(("grafana", panel["title"], sql, {}))
    assert queries, "the dashboard has no SQL panels"
    return queries
