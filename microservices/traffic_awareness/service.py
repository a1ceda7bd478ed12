"""The traffic-awareness service: its declaration (what it reads, writes and measures), the site layout it caches,
and ``process``, which hands each batch to the pure ``detect.step``.

Close encounters (encounters.py), queues at load and dump zones (queueing.py) and road use are decided in
``detect.step`` from the samples and the state alone; routes and the site-view card are in routes.py.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from microservices.sdk import Batch, Card, CardContext, Kpi, Outputs, ReportRequest, ReportSection, Service, SiteCache
from microservices.traffic_awareness import detect, routes
from microservices.traffic_awareness.roads import Layout
from microservices.traffic_awareness.settings import TrafficSettings
from microservices.traffic_awareness.track import Setup, track_of
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import SiteConfig

KPIS = (
    Kpi(
        name="queue_minutes_per_load",
        description="minutes haulers waited in queues at load zones, per load served",
        unit="min/load",
        higher_is_better=False,
        daily_sql="""
            SELECT s.day, coalesce(q.minutes, 0) / s.loads AS value
            FROM (SELECT (served_from AT TIME ZONE 'UTC')::date AS day, count(*)::float AS loads
                  FROM traffic_awareness.services
                  WHERE site_id = %(site_id)s AND zone_type = 'load'
                    AND served_from >= %(start)s AND served_from < %(end)s GROUP BY 1) s
            LEFT JOIN (SELECT (queued_from AT TIME ZONE 'UTC')::date AS day, sum(wait_s) / 60.0 AS minutes
                       FROM traffic_awareness.queues
                       WHERE site_id = %(site_id)s AND zone_type = 'load'
                         AND queued_from >= %(start)s AND queued_from < %(end)s GROUP BY 1) q ON q.day = s.day
            WHERE s.loads > 0 ORDER BY s.day""",
    ),
    Kpi(
        name="critical_encounters_per_1000_machine_hours",
        description="critical close encounters between machines per 1000 engine-on machine-hours",
        unit="per 1000 h",
        higher_is_better=False,
        daily_sql="""
            SELECT a.day, 1000.0 * coalesce(e.n, 0) / a.hours AS value
            FROM (SELECT (minute AT TIME ZONE 'UTC')::date AS day, sum(moving_ms + idle_ms) / 3.6e6 AS hours
                  FROM positioning.activity
                  WHERE site_id = %(site_id)s AND minute >= %(start)s AND minute < %(end)s GROUP BY 1) a
            LEFT JOIN (SELECT (at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
                       FROM traffic_awareness.encounters
                       WHERE site_id = %(site_id)s AND level = 'critical' GROUP BY 1) e ON e.day = a.day
            WHERE a.hours > 0 ORDER BY a.day""",
    ),
)


@lru_cache(maxsize=64)
def _frame_at(lat: float, lon: float) -> LocalFrame:
    """A local frame for a site without a site file (building the transformer is the slow part)."""
    return LocalFrame(lat, lon)


LAYOUTS: SiteCache[Layout] = SiteCache()


class TrafficAwareness(Service[TrafficSettings]):
    """Close encounters between machines, queues at loaders and dumps, congestion, and live alerts."""

    name = "traffic-awareness"
    version = "0.1.0"
    summary = ("Close encounters between machines (distance, closing speed, time to collision; warning/critical) "
               "with live alerts; queues and loader idle time at load and dump zones; congestion per road "
               "segment; re-allocation of haulers between loaders")
    depends_on = ("positioning",)
    consumes = ("lat", "lon", "speed_kmh", "heading_deg", "payload_kg")
    tables = (
        "traffic_awareness.encounters",
        "traffic_awareness.queues",
        "traffic_awareness.services",
        "traffic_awareness.segment_use",
    )
    migrations = Path(__file__).parent / "migrations"
    kpis = KPIS
    alert_channel = "traffic"  # alerts go to sites/{site}/alerts/traffic

    def layout(self, site: SiteConfig, settings: TrafficSettings) -> Layout:
        """The prepared zones and segments of a site, cached by the site file and segment length."""
        return LAYOUTS.get(site, lambda: Layout(site, settings), settings.segment_length_m)

    def process(self, batch: Batch, state: dict[str, Any], settings: TrafficSettings) -> tuple[Outputs, dict]:
        """Add the new fixes to each machine's tail, then emit what became final up to the site's frontier."""
        if batch.telemetry.empty:
            return Outputs(), state
        state = dict(state) if state.get("v") == detect.STATE_VERSION else detect.new_state()
        site = batch.site
        layout = self.layout(site, settings) if site is not None and (site.zones or site.paths) else None
        frame = layout.frame if layout is not None else self._local_frame(state, batch.telemetry)
        track = track_of(batch.telemetry, state["tails"], frame)
        if track is None:
            return Outputs(), state
        machines = batch.machines
        kinds = dict(zip(machines["machine_id"], machines["kind"], strict=False)) if not machines.empty else {}
        rated = {} if machines.empty or "rated_payload_kg" not in machines else dict(zip(
            machines["machine_id"], pd.to_numeric(machines["rated_payload_kg"], errors="coerce"), strict=False))
        return detect.step(track, state, Setup(settings, layout, frame, site, kinds, rated))

    @staticmethod
    def _local_frame(state: dict[str, Any], telemetry: pd.DataFrame) -> LocalFrame:
        """Without a site file (or one with no zones and paths): a frame fixed at the first fix (kept in state)."""
        if "origin" not in state:
            fixes = telemetry.dropna(subset=["lat", "lon"])
            first = fixes.iloc[0] if not fixes.empty else {"lat": 0.0, "lon": 0.0}
            state["origin"] = [round(float(first["lat"]), 2), round(float(first["lon"]), 2)]
        return _frame_at(*state["origin"])

    # --- API ------------------------------------------------------------------------------------

    def router(self) -> Any:
        """Routes under /api/v1/sites/{site_id}/traffic-awareness/."""
        return routes.router

    def report(self, request: ReportRequest, settings: TrafficSettings) -> list[ReportSection]:
        """This service's sections of the site's shift and daily reports (report.py beside this file)."""
        from microservices.traffic_awareness.report import sections

        return sections(request, settings)

    def card(self, context: CardContext, settings: TrafficSettings) -> Card | None:
        """Encounters today, critical ones, and the current queue length, for the site view."""
        return routes.card_data(context)
