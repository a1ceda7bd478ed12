"""Traffic awareness's part of the shift report: close encounters by level and place, and queue time per zone."""

from __future__ import annotations

from microservices.report_sections import Figure, ReportRequest, ReportSection, Table, bar_chart
from microservices.traffic_awareness.settings import TrafficSettings

_ENCOUNTERS = """
    SELECT zone, count(*) FILTER (WHERE level = 'warning') AS warning,
           count(*) FILTER (WHERE level = 'critical') AS critical, min(min_distance_m) AS closest_m
    FROM traffic_awareness.encounters WHERE site_id = %(site_id)s AND at >= %(start)s AND at < %(end)s
    GROUP BY zone ORDER BY critical DESC, warning DESC, zone NULLS LAST"""
_QUEUES = """
    SELECT zone, zone_type, count(*) AS queues, sum(wait_s) / 60.0 AS queue_min, avg(wait_s) / 60.0 AS mean_min,
           max(wait_s) / 60.0 AS longest_min
    FROM traffic_awareness.queues WHERE site_id = %(site_id)s AND queued_from >= %(start)s AND queued_from < %(end)s
    GROUP BY zone, zone_type ORDER BY queue_min DESC, zone"""


def sections(request: ReportRequest, settings: TrafficSettings) -> list[ReportSection]:
    """Encounters (warning, critical) per place, and hauler queue time per load and dump zone."""
    encounters = request.read(_ENCOUNTERS, request.params())
    queues = request.read(_QUEUES, request.params())
    for frame in (encounters, queues):
        if not frame.empty:
            frame["zone"] = [request.zone_label(z) for z in frame["zone"]]
            for column in frame.columns.difference(["zone", "zone_type"]):
                frame[column] = frame[column].astype(float)
    warning = int(encounters["warning"].sum()) if not encounters.empty else 0
    critical = int(encounters["critical"].sum()) if not encounters.empty else 0
    queue_h = float(queues["queue_min"].sum()) / 60 if not queues.empty else 0.0
    figures = [Figure("Encounters, warning", warning), Figure("Encounters, critical", critical),
               Figure("Hauler queue time", queue_h, "h")]
    tables = [
        Table.of(encounters, "Encounters by place", {"zone": "Place", "warning": "Warning", "critical": "Critical",
                                                     "closest_m": "Closest m"}, digits=1)
        if not encounters.empty else Table("Encounters by place", ["Place", "Warning", "Critical"], []),
        Table.of(queues, "Queue time by zone", {"zone": "Zone", "zone_type": "Type", "queues": "Queues",
                                                "queue_min": "Queue min", "mean_min": "Mean min",
                                                "longest_min": "Longest min"})
        if not queues.empty else Table("Queue time by zone", ["Zone", "Queues"], []),
    ]
    charts = [bar_chart("Queue minutes per zone", queues, "zone", ["queue_min"], unit="min",
                        labels={"queue_min": "queue"})] if not queues.empty else []
    return [ReportSection("Traffic: encounters and queues (traffic awareness)", figures=figures, tables=tables,
                          charts=charts, order=30)]
