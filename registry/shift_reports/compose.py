"""A report of one site and period: the sections of every service switched on there, in the catalogue's order.

A section is a plugin's code reading its own tables; one that fails is shown as unavailable with its reason, the
way a failing card is, and the rest of the report still goes out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg

from microservices.frames import frame_reader
from microservices.report_sections import ReportRequest, ReportSection
from microservices.sdk import Service
from registry.enablement import InvalidSettings, effective_settings, site_enablements
from sitepulse.errors import NotFound
from sitepulse.sites import load_site

log = logging.getLogger(__name__)
SECTION_ERRORS = (psycopg.Error, InvalidSettings, ValueError, LookupError, TypeError, ArithmeticError,
                  AttributeError)


@dataclass(frozen=True)
class Report:
    """Everything a renderer needs: who, when (UTC and the site's zone), what."""

    site_id: str
    site_name: str
    timezone: str
    start: datetime
    end: datetime
    label: str
    sections: list[ReportSection]
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def services(self) -> list[str]:
        """The services whose sections the report holds (each counts a reader when the report is opened)."""
        return sorted({s.service for s in self.sections if s.service})

    def local(self, instant: datetime) -> str:
        """An instant in the site's time zone, as printed in the report."""
        return instant.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M")

    @property
    def period_text(self) -> str:
        return f"{self.local(self.start)} to {self.local(self.end)} ({self.timezone})"


def compose_report(conn: psycopg.Connection, services: dict[str, Service], site_id: str, start: datetime,
                   end: datetime, label: str | None = None) -> Report:
    """The report of ``site_id`` for [start, end): NotFound for a site that does not exist."""
    site = load_site(conn, site_id)
    if site is None:
        raise NotFound(f"site {site_id!r} not found")
    request = ReportRequest(site_id, start.astimezone(UTC), end.astimezone(UTC), site.timezone, site,
                            frame_reader(conn))
    switches = site_enablements(conn, site_id)
    sections: list[ReportSection] = []
    for name, service in services.items():
        if name in switches and switches[name].enabled:
            sections.extend(_sections_of(conn, service, request, switches[name].settings))
    sections.sort(key=lambda s: s.order)  # stable: a service's sections keep their order
    report = Report(site_id, site.name or site_id, site.timezone, request.start, request.end, "", sections)
    return Report(**{**report.__dict__, "label": label or report.period_text})


def _sections_of(conn: psycopg.Connection, service: Service, request: ReportRequest,
                 stored: dict | None) -> list[ReportSection]:
    """A service's sections, stamped with its name; one saying why when its code fails."""
    try:
        with conn.transaction():  # a failed query must not abort the other services' sections
            made = service.report(request, effective_settings(service, stored or {}))
    except SECTION_ERRORS as exc:
        log.warning("report sections of %s on site %s failed: %s", service.name, request.site_id, exc, exc_info=True)
        return [ReportSection(service.name, notes=[f"unavailable: {type(exc).__name__}: {exc}"[:300]],
                              service=service.name)]
    return [ReportSection(**{**s.__dict__, "service": service.name}) for s in made or []]
