"""What is done with a site's data: each service's reads and writes, and the access log of who did what."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from microservices.sdk import TimeRangeDep
from registry.api.deps import DbDep, PageDep, SiteDep, StateDep
from registry.transparency import access_log, data_use

router = APIRouter(prefix="/api/v1/sites/{site_id}", tags=["transparency"])


@router.get("/data-use")
def get_data_use(site_id: SiteDep, conn: DbDep, state: StateDep) -> dict[str, Any]:
    """Per service on the site: the telemetry fields it reads, what it writes, since when and who switched it on."""
    return {"site_id": site_id, "items": data_use(conn, state.services, site_id), "next_cursor": None}


@router.get("/access-log")
def get_access_log(
    site_id: SiteDep, conn: DbDep, page: PageDep, period: TimeRangeDep,
    action: Annotated[Literal["api_call", "card_view", "export", "alert_ack"] | None, Query()] = None,
    principal: Annotated[str | None, Query(max_length=200, description="only this user's events")] = None,
) -> dict[str, Any]:
    """Who used, viewed or exported what on the site, and when; newest first."""
    return page.fetch(lambda before, limit: access_log(conn, site_id, start=period.start, end=period.end,
                                                       action=action, principal=principal, before=before,
                                                       limit=limit),
                      at=datetime, id=int)
