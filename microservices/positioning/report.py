"""Positioning's part of the shift report: hours moving, idle and off per machine, and speeding per zone."""

from __future__ import annotations

from microservices.positioning.settings import PositioningSettings
from microservices.report_sections import Figure, ReportRequest, ReportSection, Table, bar_chart

_HOURS = """
    SELECT machine_id, sum(moving_ms) / 3.6e6 AS moving_h, sum(idle_ms) / 3.6e6 AS idle_h, sum(off_ms) / 3.6e6 AS off_h,
           sum(distance_mm) / 1e6 AS distance_km
    FROM positioning.activity WHERE site_id = %(site_id)s AND minute >= %(start)s AND minute < %(end)s
    GROUP BY machine_id ORDER BY machine_id"""
_SPEEDING = """
    SELECT zone, count(*) AS episodes, count(DISTINCT machine_id) AS machines, sum(duration_s) / 60.0 AS minutes,
           max(max_speed_kmh) AS top_kmh, max(limit_kmh) AS limit_kmh
    FROM positioning.speeding WHERE site_id = %(site_id)s AND started_at >= %(start)s AND started_at < %(end)s
    GROUP BY zone ORDER BY episodes DESC, zone"""


def sections(request: ReportRequest, settings: PositioningSettings) -> list[ReportSection]:
    """Operating hours with the idle share, and speeding episodes by zone."""
    hours = request.read(_HOURS, request.params())
    speeding = request.read(_SPEEDING, request.params())
    for frame in (hours, speeding):
        for column in frame.columns:
            if column not in ("machine_id", "zone"):
                frame[column] = frame[column].astype(float)
    running = float(hours["moving_h"].sum() + hours["idle_h"].sum()) if not hours.empty else 0.0
    idle = float(hours["idle_h"].sum()) if not hours.empty else 0.0
    figures = [Figure("Engine-on hours", running, "h"), Figure("Idle hours", idle, "h"),
               Figure("Idle share", 100 * idle / running if running else None, "%"),
               Figure("Speeding episodes", int(speeding["episodes"].sum()) if not speeding.empty else 0)]
    if not hours.empty:
        hours["idle_pct"] = 100 * hours["idle_h"] / (hours["moving_h"] + hours["idle_h"]).where(lambda h: h > 0)
    if not speeding.empty:
        speeding["zone"] = [request.zone_label(z) for z in speeding["zone"]]
    tables = [
        Table.of(hours, "Hours per machine", {"machine_id": "Machine", "moving_h": "Moving h", "idle_h": "Idle h",
                                              "off_h": "Engine off h", "idle_pct": "Idle %",
                                              "distance_km": "Distance km"}, digits=2) if not hours.empty else
        Table("Hours per machine", ["Machine"], []),
        Table.of(speeding, "Speeding by zone", {"zone": "Zone", "episodes": "Episodes", "machines": "Machines",
                                                "minutes": "Minutes", "top_kmh": "Top km/h",
                                                "limit_kmh": "Limit km/h"}) if not speeding.empty else
        Table("Speeding by zone", ["Zone", "Episodes"], []),
    ]
    charts = [bar_chart("Hours per machine", hours, "machine_id", ["moving_h", "idle_h"], unit="h",
                        labels={"moving_h": "moving", "idle_h": "idle"}, kind="barh", stacked=True)
              ] if not hours.empty else []
    return [ReportSection("Machine hours and speeding (positioning)", figures=figures, tables=tables, charts=charts,
                          notes=[] if not hours.empty else ["No positions in this period."], order=20)]


__all__ = ["sections"]
