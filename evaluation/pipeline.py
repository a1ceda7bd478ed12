"""The pipeline without its servers: telemetry from simulator messages as ingest decodes it, ``process`` run in
chunks as the runner runs it, the same telemetry delivered in other orders.

``process`` is pure, so most tests are fixtures in, tables out: decode messages exactly as
ingest does (rejects dropped, duplicates stored once), feed them in time-ordered chunks the
way the runner would, and compare the tables with the simulator's ground truth.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ingest.reader import telemetry_of_messages
from microservices.clock import telemetry_for
from microservices.sdk import Batch, Service
from sitepulse.sitefile import SiteConfig


def telemetry_from_messages(messages: Iterable[Any], received_at: datetime | None = None, *,
                            sent_from: datetime | None = None, latency_s: float = 0.2) -> pd.DataFrame:
    """Telemetry rows as ingest would store them from (topic, payload) messages or objects with both.

    All arrive at ``received_at`` (default now), or with ``sent_from`` (the simulation's start) each simulator
    message ``latency_s`` after its send time ``t``, as on a live site (so device clocks show against arrival).
    """
    when = received_at or datetime.now(UTC)

    def arrivals() -> Iterable[tuple[str, bytes, datetime]]:
        for message in messages:
            topic, payload = (message.topic, message.payload) if hasattr(message, "topic") else message
            at = when if sent_from is None else sent_from + timedelta(seconds=message.t + latency_s)
            yield topic, payload, at

    frame = telemetry_of_messages(arrivals())
    if sent_from is not None:
        frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    return frame


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
    alerts, ends = [], []
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
        ends.extend(outputs.ends)
    result = {t: pd.concat([p.dropna(axis=1, how="all") for p in parts], ignore_index=True).reindex(
        columns=parts[0].columns) for t, parts in tables.items()}
    result["_alerts"] = pd.DataFrame([vars(a) for a in alerts])
    result["_alert_ends"] = pd.DataFrame([vars(e) for e in ends], columns=["key", "at", "reason"])
    return result




Timing = TypeVar("Timing")


def in_turns(runs: int, first: Callable[[], Timing], second: Callable[[], Timing]
             ) -> tuple[list[Timing], list[Timing]]:
    """What ``first`` and ``second`` return over ``runs`` rounds, run in turns (ABBA, a collection before each) so
    both see the same load on shared cores and neither always runs after the other's garbage (which costs the
    later one a few per cent): how the benchmarks time a service with and without a feature."""
    a: list[Timing] = []
    b: list[Timing] = []
    for run in range(runs):
        for results, call in ((a, first), (b, second)) if run % 2 == 0 else ((b, second), (a, first)):
            gc.collect()
            results.append(call())
    return a, b


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
