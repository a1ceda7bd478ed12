"""HTTP routes of data quality (findings, per-machine sensor status) and the site-view card.

A finding lasts from its event's ``since`` to the next event of the same machine and sensor; the
intervals are made in SQL from the append-only ``data_quality.sensor_events``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Query

from microservices.data_quality.wording import SENSOR_NAMES, describe, effect_of
from microservices.sdk import Card, CardContext
from microservices.sdk_routes import PageDep, ServiceRequestDep, TimeRangeDep

router = APIRouter()

MachineFilter = Annotated[str | None, Query(max_length=64, description="only this machine")]

_INTERVALS = """
    WITH e AS (
        SELECT machine_id, sensor, status, value, since, detected_at, evidence, effect,
               lead(since) OVER (PARTITION BY machine_id, sensor ORDER BY since, detected_at, run_seq) AS ended_at
        FROM data_quality.sensor_events WHERE site_id = %(site)s
          AND (%(machine)s::text IS NULL OR machine_id = %(machine)s))
    SELECT machine_id, sensor, status, value, since, detected_at, ended_at, evidence, effect FROM e
    WHERE status <> 'ok'
"""
_FINDINGS = _INTERVALS + """
      AND ((%(start)s::timestamptz IS NULL AND %(end)s::timestamptz IS NULL AND ended_at IS NULL)
           OR ((%(start)s::timestamptz IS NOT NULL OR %(end)s::timestamptz IS NOT NULL)
               AND (%(end)s::timestamptz IS NULL OR since < %(end)s)
               AND (%(start)s::timestamptz IS NULL OR ended_at IS NULL OR ended_at > %(start)s)))
      AND (%(after_at)s::timestamptz IS NULL OR (since, machine_id, sensor) > (%(after_at)s, %(after_m)s,
           %(after_s)s))
    ORDER BY since, machine_id, sensor LIMIT %(limit)s"""


def _message(row: Mapping[str, Any]) -> str:
    since = pd.Timestamp(row["since"]).tz_convert("UTC")
    return (f"{row['machine_id']}: {describe(row['sensor'], row['status'], row['value'])} since {since:%H:%M} UTC"
            f" — {effect_of(row['sensor'], row['status'], row['machine_id'], row['value'], short=True)}")


@router.get("")
def findings(ctx: ServiceRequestDep, page: PageDep, window: TimeRangeDep,
             machine_id: MachineFilter = None) -> dict[str, Any]:
    """Sensor findings: without from/to those open now; with them, every finding overlapping the range.

    Each item: machine_id, sensor, status (stuck, absent, implausible, offset, skew), value, since,
    detected_at, ended_at (null while open), evidence, effect, message."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        rows = ctx.rows(_FINDINGS, {
            "site": ctx.site_id, "start": window.start, "end": window.end, "machine": machine_id,
            "after_at": after[0] if after else None, "after_m": after[1] if after else None,
            "after_s": after[2] if after else None, "limit": limit})
        for row in rows:
            row["message"] = _message(row)
        return rows

    return page.fetch(read, since=datetime, machine_id=str, sensor=str)


_MACHINES = """
    SELECT DISTINCT ON (machine_id, sensor) machine_id, sensor, status, since
    FROM data_quality.sensor_events WHERE site_id = %(site)s
    ORDER BY machine_id, sensor, since DESC, detected_at DESC, run_seq DESC"""


@router.get("/machines")
def machines(ctx: ServiceRequestDep) -> dict[str, Any]:
    """Every machine with a finding so far and each sensor's status now (a sensor never found bad is ok)."""
    frame = ctx.frame(_MACHINES, {"site": ctx.site_id})
    items = []
    for machine_id, part in (frame.groupby("machine_id", sort=True) if not frame.empty else []):
        sensors = {s: "ok" for s in SENSOR_NAMES}
        sensors.update(dict(zip(part["sensor"], part["status"], strict=True)))
        items.append({"machine_id": machine_id, "sensors": sensors,
                      "healthy": all(v == "ok" for v in sensors.values())})
    return {"items": items, "next_cursor": None}


def site_card(ctx: CardContext) -> Card:
    """Open findings as sentences, and how many machines and sensors they concern."""
    frame = ctx.read(_INTERVALS + " AND ended_at IS NULL ORDER BY since, machine_id, sensor",
                     {"site": ctx.site_id, "machine": None})
    rows = frame.to_dict("records") if not frame.empty else []
    lines = [{"machine": r["machine_id"], "sensor": r["sensor"], "finding": _message(r)} for r in rows]
    return Card(title="Data quality", metrics=[
        {"label": "sensors bad now", "value": len(rows), "unit": ""},
        {"label": "machines affected", "value": len({r["machine_id"] for r in rows}), "unit": ""}],
        data={"findings": lines}, link="")
