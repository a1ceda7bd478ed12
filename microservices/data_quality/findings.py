"""Data quality's findings read by others (the registry's evaluation): machine-hours with a bad sensor, per sensor.

The findings are this service's table; a reader asks here rather than querying ``data_quality.sensor_events``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import psycopg

# a finding still open lasts until the machine's newest sample (a machine that stopped sending is not degraded);
# the newest samples come from ingest (ingest.fleet.newest_sample_times) as two parallel arrays
_DEGRADED_SQL = """
SELECT sensor, sum(extract(epoch FROM least(coalesce(ended_at, l.ts, %(end)s), %(end)s) - greatest(since, %(start)s)))
       / 3600.0
FROM (SELECT machine_id, sensor, status, since, lead(since) OVER (PARTITION BY machine_id, sensor ORDER BY since,
             detected_at, run_seq) AS ended_at
      FROM data_quality.sensor_events WHERE site_id = %(site_id)s AND since < %(end)s) e
LEFT JOIN unnest(%(machines)s::text[], %(newest)s::timestamptz[]) AS l(machine_id, ts) ON l.machine_id = e.machine_id
WHERE status <> 'ok' AND least(coalesce(ended_at, l.ts, %(end)s), %(end)s) > greatest(since, %(start)s)
  AND sensor = ANY(%(sensors)s)
GROUP BY sensor ORDER BY sensor
"""


def degraded_hours_by_sensor(conn: psycopg.Connection, site_id: str, start: datetime, end: datetime,
                             sensors: Iterable[str], newest: Mapping[str, datetime | None]) -> dict[str, float] | None:
    """Machine-hours in [start, end) each of these sensors was not ok on the site, a still-open finding lasting
    until the machine's ``newest`` sample (machine id -> time); None when data quality is not installed."""
    if conn.execute("SELECT to_regclass('data_quality.sensor_events')").fetchone()[0] is None:
        return None
    machines = list(newest)
    rows = conn.execute(_DEGRADED_SQL, {"site_id": site_id, "start": start, "end": end, "sensors": list(sensors),
                                        "machines": machines, "newest": [newest[m] for m in machines]}).fetchall()
    return {sensor: float(hours) for sensor, hours in rows}
