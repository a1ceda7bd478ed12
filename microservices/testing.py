"""Test helpers for service authors: telemetry from simulator messages, pure incremental runs, DB inserts.

``process`` is pure, so most tests are fixtures in, tables out: decode messages exactly as
ingest does (rejects dropped, duplicates stored once), feed them in time-ordered chunks the
way the runner would, and compare the tables with the simulator's ground truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from pydantic import BaseModel

from ingest.contract import ROW_COLUMNS, Decoded, Decoder
from ingest.partitions import Partitions
from ingest.reader import Watermark
from ingest.writer import LAST_SQL, last_value_params
from microservices.clock import telemetry_for
from microservices.runner import ServiceHost
from microservices.sdk import Batch, Service
from sitepulse.sitefile import SiteConfig

SORT = ["site_id", "machine_id", "ts", "seq"]


def telemetry_from_messages(messages: Iterable[Any], received_at: datetime | None = None, *,
                            sent_from: datetime | None = None, latency_s: float = 0.2) -> pd.DataFrame:
    """Telemetry rows as ingest would store them from (topic, payload) messages or objects with both.

    All arrive at ``received_at`` (default now), or with ``sent_from`` (the simulation's start) each simulator
    message ``latency_s`` after its send time ``t``, as on a live site (so device clocks show against arrival).
    """
    decoder, out = Decoder(), Decoded()
    when = received_at or datetime.now(UTC)
    for message in messages:
        topic, payload = (message.topic, message.payload) if hasattr(message, "topic") else message
        if sent_from is not None:
            when = sent_from + timedelta(seconds=message.t + latency_s)
        decoder.decode_into(out, topic, payload, when)
    frame = pd.DataFrame(out.rows, columns=list(ROW_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    if sent_from is not None:
        frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    frame = frame.drop_duplicates(["site_id", "machine_id", "ts", "seq"])
    return frame.sort_values(SORT, kind="stable").reset_index(drop=True)


def machines_frame(site: SiteConfig | None) -> pd.DataFrame:
    """The machine registry frame a Batch carries, from a site file's machines."""
    rows = [[m.id, m.kind.value, m.model, m.rated_payload_kg] for m in (site.machines if site else [])]
    return pd.DataFrame(rows, columns=["machine_id", "kind", "model", "rated_payload_kg"])


def run_in_chunks(service: Service, telemetry: pd.DataFrame, *, site: SiteConfig | None = None,
                  settings: BaseModel | None = None, chunk: str = "10min",
                  machines: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Call ``process`` on consecutive time windows of ``telemetry``, carrying state, as the runner does
    (through strict JSON: the runner stores it as jsonb, which holds neither NaN nor Infinity)."""
    settings = settings if settings is not None else service.Settings()
    machines = machines if machines is not None else machines_frame(site)
    state: dict = {}
    tables: dict[str, list[pd.DataFrame]] = {}
    alerts = []
    if telemetry.empty:
        return {}
    windows = telemetry["ts"].dt.floor(chunk)
    for _, part in telemetry.groupby(windows, sort=True):
        part = part.sort_values(["machine_id", "ts", "seq"], kind="stable").reset_index(drop=True)
        part = telemetry_for(service, part)  # as the runner does
        batch = Batch(site_id=str(part["site_id"].iloc[0]), telemetry=part, site=site, machines=machines,
                      read=lambda q, p=None: pd.DataFrame())
        outputs, state = service.process(batch, state, settings)
        state = json.loads(json.dumps(state, allow_nan=False))
        for table, frame in outputs.frames().items():
            tables.setdefault(table, []).append(frame)
        alerts.extend(outputs.alerts)
    result = {t: pd.concat([p.dropna(axis=1, how="all") for p in parts], ignore_index=True).reindex(
        columns=parts[0].columns) for t, parts in tables.items()}
    result["_alerts"] = pd.DataFrame([vars(a) for a in alerts])
    return result


def insert_telemetry(conn: psycopg.Connection, rows: pd.DataFrame) -> int:
    """Store telemetry rows (ingest's columns) in one transaction as the writer does: duplicates stored once,
    the machines' last values (``machine_last``) kept up to date."""
    if rows.empty:
        return 0
    Partitions(enabled=True).ensure(conn, rows["ts"].min(), rows["ts"].max())
    columns = [c for c in ROW_COLUMNS if c in rows.columns and c != "extra"]
    values = rows[columns].astype(object).where(rows[columns].notna(), None)
    tuples = list(values.itertuples(index=False, name=None))
    full = values.reindex(columns=list(ROW_COLUMNS)).astype(object)
    full = full.where(full.notna(), None)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO telemetry ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
            " ON CONFLICT DO NOTHING",
            tuples,
        )
        cur.execute(LAST_SQL, last_value_params(list(full.itertuples(index=False, name=None))))
    return len(rows)


def catch_up_fully(conn: psycopg.Connection, host: ServiceHost, site_ids: list[str], timeout: float = 30) -> int:
    """Run ``host`` until its checkpoint covers every stored row of these sites; returns rows processed.

    ``catch_up`` alone may stop early while any transaction in the cluster (even autovacuum's
    ANALYZE) holds the snapshot xmin back: rows are then read on the next wake, never lost, but a
    test must wait for them.
    """
    deadline = time.monotonic() + timeout
    total = 0
    for site_id in site_ids:
        newest = conn.execute("SELECT max(xid::text::bigint) FROM telemetry WHERE site_id = %s",
                              (site_id,)).fetchone()[0]
        while True:
            total += host.catch_up(conn, [site_id])
            mark = conn.execute("SELECT watermark FROM service_checkpoints WHERE service = %s AND site_id = %s",
                                (host.service.name, site_id)).fetchone()
            if newest is None or (mark and mark[0] and Watermark.from_json(mark[0]).xmin > newest):
                break
            if time.monotonic() > deadline:
                holders = conn.execute("SELECT pid, backend_type, state, query FROM pg_stat_activity"
                                       " WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL").fetchall()
                raise AssertionError(f"{host.service.name}/{site_id} did not catch up in {timeout} s; "
                                     f"transactions holding the snapshot back: {holders}")
            time.sleep(0.02)
    return total


def split(frame: pd.DataFrame, parts: int) -> list[pd.DataFrame]:
    """``frame`` in ``parts`` consecutive pieces (the last ones one row shorter when it does not divide)."""
    return [frame.iloc[index] for index in np.array_split(np.arange(len(frame)), parts)]


def arrival_orders(telemetry: pd.DataFrame, *, window: str, shuffled_parts: int, duplicated_parts: int,
                   seeds: tuple[int, int, int]) -> dict[str, list[pd.DataFrame]]:
    """The same telemetry delivered three ways, for order-independence tests: in time windows, shuffled in
    parts, and shuffled with a 30 % repeat and every 7th row again (duplicates)."""
    shuffle_seed, duplicate_seed, repeat_seed = seeds
    return {
        "in-order": [part for _, part in telemetry.groupby(telemetry["ts"].dt.floor(window))],
        "shuffled": split(telemetry.sample(frac=1, random_state=shuffle_seed), shuffled_parts),
        "duplicated": [*split(telemetry.sample(frac=1, random_state=duplicate_seed), duplicated_parts),
                       telemetry.sample(frac=0.3, random_state=repeat_seed), telemetry.iloc[::7]],
    }


def all_pages(client: Any, path: str, headers: dict[str, str], **params: Any) -> list[dict]:
    """Every item of a paginated route, following ``next_cursor`` (each page must answer 200)."""
    items, cursor = [], None
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
