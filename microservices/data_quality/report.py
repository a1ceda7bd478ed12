"""Data quality's part of the shift report: what was degraded in the period, for how long, and what it affected."""

from __future__ import annotations

import pandas as pd

from microservices.data_quality.settings import DataQualitySettings
from microservices.data_quality.wording import SENSOR_NAMES
from microservices.report_sections import Figure, ReportRequest, ReportSection, Table

# Each bad verdict lasts until the next verdict of that sensor (an 'ok' ends it), clipped to the period.
_DEGRADED = """
    WITH e AS (
        SELECT machine_id, sensor, status, since, effect,
               lead(since) OVER (PARTITION BY machine_id, sensor ORDER BY since, detected_at, run_seq) AS ended_at
        FROM data_quality.sensor_events WHERE site_id = %(site_id)s AND since < %(end)s)
    SELECT machine_id, sensor, status, greatest(since, %(start)s) AS from_t, least(coalesce(ended_at, %(end)s),
           %(end)s) AS to_t, effect
    FROM e WHERE status <> 'ok' AND coalesce(ended_at, %(end)s) > %(start)s
    ORDER BY machine_id, sensor, since"""


def sections(request: ReportRequest, settings: DataQualitySettings) -> list[ReportSection]:
    """One row per degraded sensor of a machine in the period: status, local from-to, hours and the effect."""
    rows = request.read(_DEGRADED, request.params())
    if rows.empty:
        return [ReportSection("Data quality", figures=[Figure("Degraded machine-hours", 0, "h")],
                              notes=["Every sensor was usable for the whole period."], order=90)]
    start, end = pd.to_datetime(rows["from_t"], utc=True), pd.to_datetime(rows["to_t"], utc=True)
    rows["minutes"] = (end - start).dt.total_seconds() / 60
    rows["from_t"] = start.dt.tz_convert(request.timezone).dt.tz_localize(None)
    rows["to_t"] = end.dt.tz_convert(request.timezone).dt.tz_localize(None)
    rows["sensor"] = [SENSOR_NAMES.get(s, s) for s in rows["sensor"]]
    hours = float(rows["minutes"].sum()) / 60
    figures = [Figure("Degraded machine-hours", hours, "h") if hours >= 1 else
               Figure("Degraded machine-minutes", hours * 60, "min"),
               Figure("Machines affected", int(rows["machine_id"].nunique()))]
    table = Table.of(rows, "What was degraded (local time)",
                     {"machine_id": "Machine", "sensor": "Sensor", "status": "Status", "from_t": "From",
                      "to_t": "To", "minutes": "Minutes", "effect": "Effect"})
    return [ReportSection("Data quality", figures=figures, tables=[table], order=90)]
