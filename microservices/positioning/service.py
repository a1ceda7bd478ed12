"""The positioning service: its declaration (what it reads, writes and measures), the site layout it caches, and
``process``, which hands each batch to the pure ``detect.step``.

Cleaning (cleaning.py) and everything derived from final samples (results.py) run inside ``detect.step``
from the samples and the state alone; routes and the live map are in routes.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from microservices.positioning import detect, routes
from microservices.positioning.layout import Layout
from microservices.positioning.settings import PositioningSettings
from microservices.positioning.track import Setup, track_of
from microservices.sdk import Batch, Card, CardContext, Kpi, Outputs, ReportRequest, ReportSection, Service, SiteCache
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import SiteConfig

KPIS = (
    Kpi(
        name="idle_share",
        description="share of engine-on time spent idle (engine running, not moving)",
        unit="%",
        higher_is_better=False,
        daily_sql="""
            SELECT (minute AT TIME ZONE 'UTC')::date AS day,
                   100.0 * sum(idle_ms) / NULLIF(sum(idle_ms + moving_ms), 0) AS value
            FROM positioning.activity
            WHERE site_id = %(site_id)s AND minute >= %(start)s AND minute < %(end)s
            GROUP BY 1 HAVING sum(idle_ms + moving_ms) > 0 ORDER BY 1""",
    ),
    Kpi(
        name="restricted_entries_per_day",
        description="entries of machines into restricted zones (e.g. a blast area) per day",
        unit="entries/day",
        higher_is_better=False,
        daily_sql="""
            SELECT d.day, count(e.entered_at)::float AS value
            FROM (SELECT DISTINCT (minute AT TIME ZONE 'UTC')::date AS day FROM positioning.activity
                  WHERE site_id = %(site_id)s AND minute >= %(start)s AND minute < %(end)s) d
            LEFT JOIN positioning.zone_entries e
              ON e.site_id = %(site_id)s AND e.zone_type = 'restricted'
             AND (e.entered_at AT TIME ZONE 'UTC')::date = d.day
            GROUP BY d.day ORDER BY d.day""",
    ),
    Kpi(
        name="speeding_per_100km",
        description="speeding events per 100 km driven",
        unit="events/100 km",
        higher_is_better=False,
        daily_sql="""
            SELECT a.day, 100.0 * coalesce(s.n, 0) / (a.km) AS value
            FROM (SELECT (minute AT TIME ZONE 'UTC')::date AS day, sum(distance_mm) / 1e6 AS km
                  FROM positioning.activity
                  WHERE site_id = %(site_id)s AND minute >= %(start)s AND minute < %(end)s
                  GROUP BY 1) a
            LEFT JOIN (SELECT (started_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
                       FROM positioning.speeding WHERE site_id = %(site_id)s GROUP BY 1) s ON s.day = a.day
            WHERE a.km > 0 ORDER BY a.day""",
    ),
)


LAYOUTS: SiteCache[Layout] = SiteCache()


class Positioning(Service[PositioningSettings]):
    """Positions cleaned of GNSS noise and jumps, zone visits, restricted entries, speeding and activity."""

    name = "positioning"
    version = "0.1.0"
    summary = ("Cleans GNSS positions; zone visits with dwell, restricted-zone entries and speeding per zone; "
               "distance, moving/idle/off time and time per zone type per machine and shift; the live map")
    consumes = ("lat", "lon", "speed_kmh", "heading_deg", "engine_on")
    tables = (
        "positioning.track",
        "positioning.activity",
        "positioning.zone_entries",
        "positioning.zone_visits",
        "positioning.speeding",
    )
    migrations = Path(__file__).parent / "migrations"
    kpis = KPIS

    def layout(self, site: SiteConfig) -> Layout:
        """The prepared zones of a site, cached by the site file's content."""
        return LAYOUTS.get(site, lambda: Layout(site))

    def process(self, batch: Batch, state: dict[str, Any], settings: PositioningSettings) -> tuple[Outputs, dict]:
        """Clean the new fixes with the carried tail and emit everything that became final."""
        telemetry = batch.telemetry
        if telemetry.empty:
            return Outputs(), state
        state = dict(state) if state.get("v") == detect.STATE_VERSION else detect.new_state()
        site = batch.site
        layout = self.layout(site) if site is not None and site.zones else None
        frame = self._local_frame(site, state, telemetry)
        track = track_of(telemetry, state["machines"], frame)
        if track is None:
            return Outputs(), state
        out, state["machines"] = detect.step(track, state["machines"], Setup(settings, layout, frame, site))
        return out, state

    @staticmethod
    def _local_frame(site: SiteConfig | None, state: dict[str, Any], telemetry: pd.DataFrame) -> LocalFrame:
        """The site's frame; without a site file, a frame fixed at the first fix ever seen (kept in state)."""
        if site is not None and (site.zones or site.paths):
            return site.frame
        if "origin" not in state:
            fixes = telemetry.dropna(subset=["lat", "lon"])
            first = fixes.iloc[0] if not fixes.empty else {"lat": 0.0, "lon": 0.0}
            state["origin"] = [round(float(first["lat"]), 2), round(float(first["lon"]), 2)]
        return LocalFrame(*state["origin"])

    # --- API ------------------------------------------------------------------------------------

    def router(self) -> Any:
        """Routes under /api/v1/sites/{site_id}/positioning/."""
        return routes.router

    def report(self, request: ReportRequest, settings: PositioningSettings) -> list[ReportSection]:
        """This service's sections of the site's shift and daily reports (report.py beside this file)."""
        from microservices.positioning.report import sections

        return sections(request, settings)

    def card(self, context: CardContext, settings: PositioningSettings) -> Card | None:
        """The live map for the site view: the site's zones and each machine's last known position and state."""
        data = routes.live_map(context)
        states = pd.Series([m["state"] for m in data["machines"]], dtype=object)
        metrics = [{"label": f"machines {s}", "value": int((states == s).sum()), "unit": ""}
                   for s in ("moving", "idle", "off")]
        return Card(title="Positioning", metrics=metrics, data=data, link="positions")
