"""Shift and daily reports: download any period, manage a site's schedules, read the delivery log, open a link.

Downloading (a site's viewers) and opening a report's link from a message (the link is the credential) are each a
``report_opened`` usage event for every service in the report. Schedules are changed by admins only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from microservices.sdk import TimeRangeDep
from registry.api.deps import AdminDep, AdminSiteDep, DbDep, PrincipalDep, SiteDep, StateDep
from registry.shift_reports.compose import compose_report
from registry.shift_reports.delivery import link_hash
from registry.shift_reports.formats import FORMATS, file_name, render
from registry.shift_reports.schedules import (
    ScheduleIn,
    create_schedule,
    delete_schedule,
    open_link,
    site_deliveries,
    site_schedules,
    update_schedule,
)
from sitepulse.errors import InvalidInput, NotFound

router = APIRouter(prefix="/api/v1", tags=["reports"])

MAX_PERIOD = timedelta(days=31)
Format = Annotated[Literal["pdf", "xlsx", "csv"], Query(alias="format", description="pdf, xlsx or csv")]
ScheduleId = Annotated[int, Path(ge=1, le=2**62)]
_FILE = {200: {"content": {media.split(";")[0]: {} for media in FORMATS.values()}, "description": "the report"}}


def _file(state: Any, conn: Any, site_id: str, start: Any, end: Any, fmt: str, principal: str,
          label: str | None = None, detail: dict[str, Any] | None = None) -> Response:
    report = compose_report(conn, state.services, site_id, start, end, label)
    data = render(report, fmt)
    for service in report.services:
        state.usage.record(site_id, service, principal, "report_opened", {"format": fmt, **(detail or {})})
    return Response(data, media_type=FORMATS[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{file_name(report, fmt)}"'})


@router.get("/sites/{site_id}/reports", response_class=Response, responses=_FILE)
def download_report(site_id: SiteDep, period: TimeRangeDep, conn: DbDep, state: StateDep, principal: PrincipalDep,
                    fmt: Format = "pdf") -> Response:
    """The site's report for [from, to) (at most 31 days) as PDF, XLSX or CSV."""
    if period.start is None or period.end is None:
        raise InvalidInput("a report needs from and to, e.g. from=2026-12-07T06:00:00Z&to=2026-12-07T18:00:00Z")
    if period.end <= period.start or period.end - period.start > MAX_PERIOD:
        raise InvalidInput("a report covers more than nothing and at most 31 days: check from and to")
    return _file(state, conn, site_id, period.start, period.end, fmt, principal.name)


@router.get("/report-links/{token}", response_class=Response, responses=_FILE)
def open_report_link(token: Annotated[str, Path(min_length=20, max_length=64)], conn: DbDep, state: StateDep,
                     fmt: Format = "pdf") -> Response:
    """The report a scheduled message links to; the link is its own credential, and each open is counted."""
    delivery = open_link(conn, link_hash(token))
    if delivery is None:
        raise NotFound("this report link is not known (it may belong to another installation)")
    return _file(state, conn, delivery["site_id"], delivery["period_start"], delivery["period_end"], fmt,
                 f"link:{delivery['target']}"[:200], delivery["label"], {"delivery": delivery["id"]})


@router.get("/sites/{site_id}/report-schedules")
def list_schedules(site_id: AdminSiteDep, conn: DbDep) -> dict[str, Any]:
    """The site's report schedules (admins)."""
    return {"items": [s.public() for s in site_schedules(conn, site_id)]}


def _checked(state: Any, body: ScheduleIn) -> ScheduleIn:
    refusal = state.webhooks.refusal(body.webhook_url) if body.webhook_url else None
    if refusal:
        raise InvalidInput(refusal)
    return body


@router.post("/sites/{site_id}/report-schedules", status_code=201)
def add_schedule(site_id: AdminSiteDep, body: ScheduleIn, conn: DbDep, state: StateDep,
                 principal: AdminDep) -> dict[str, Any]:
    """A new schedule: at each shift's end or daily at a local time, to e-mail addresses and/or a webhook."""
    return create_schedule(conn, site_id, _checked(state, body), principal.name).public()


@router.put("/sites/{site_id}/report-schedules/{schedule_id}")
def change_schedule(site_id: AdminSiteDep, schedule_id: ScheduleId, body: ScheduleIn, conn: DbDep,
                    state: StateDep) -> dict[str, Any]:
    return update_schedule(conn, site_id, schedule_id, _checked(state, body)).public()


@router.delete("/sites/{site_id}/report-schedules/{schedule_id}", status_code=204)
def remove_schedule(site_id: AdminSiteDep, schedule_id: ScheduleId, conn: DbDep) -> Response:
    delete_schedule(conn, site_id, schedule_id)
    return Response(status_code=204)


@router.get("/sites/{site_id}/report-deliveries")
def list_deliveries(site_id: SiteDep, conn: DbDep,
                    status: Annotated[Literal["delivered", "failed"] | None, Query()] = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """The latest report deliveries of the site, newest first: to whom, how it went, how often it was opened."""
    return {"items": site_deliveries(conn, site_id, limit, status)}
