"""A site's alerts, newest first, and acknowledging them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status

from microservices.sdk import page_of
from registry.deps import DbDep, PageDep, PrincipalDep, SiteDep
from registry.usage import recorder

BIGINT_MAX = 2**63 - 1

router = APIRouter(prefix="/api/v1/sites/{site_id}/alerts", tags=["alerts"])

_COLUMNS = ("id", "service", "key", "level", "at", "machine_id", "message", "data", "created_at",
            "published_at", "acknowledged_at", "acknowledged_by")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM service_alerts"


def _alert(row: tuple) -> dict[str, Any]:
    return dict(zip(_COLUMNS, row, strict=True))


@router.get("")
def list_alerts(
    site_id: SiteDep, conn: DbDep, page: PageDep,
    open_only: Annotated[bool, Query(alias="open", description="only alerts not yet acknowledged")] = False,
    service: Annotated[str | None, Query(description="only this service's alerts")] = None,
) -> dict[str, Any]:
    """Alerts raised for the site, newest first (open and acknowledged, unless ``open=true``)."""
    after = page.key(datetime, int)
    rows = conn.execute(
        f"{_SELECT} WHERE site_id = %(site)s"
        " AND (NOT %(open)s OR acknowledged_at IS NULL)"
        " AND (%(service)s::text IS NULL OR service = %(service)s)"
        " AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) < (%(after_at)s, %(after_id)s))"
        " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        {"site": site_id, "open": open_only, "service": service, "after_at": after[0] if after else None,
         "after_id": after[1] if after else None, "limit": page.limit + 1},
    ).fetchall()
    return page_of([_alert(r) for r in rows], page.limit, lambda a: (a["created_at"], a["id"]))


@router.post("/{alert_id}/ack")
def acknowledge_alert(site_id: SiteDep, alert_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)], conn: DbDep,
                      principal: PrincipalDep, request: Request) -> dict[str, Any]:
    """Mark an alert as seen by the caller; acknowledging twice keeps the first acknowledgement.

    The first acknowledgement is an ``alert_ack`` usage event of the alert's service.
    """
    row = conn.execute(
        "WITH old AS (SELECT id, acknowledged_at FROM service_alerts WHERE site_id = %s AND id = %s FOR UPDATE)"
        " UPDATE service_alerts s SET acknowledged_at = COALESCE(s.acknowledged_at, now()),"
        " acknowledged_by = COALESCE(s.acknowledged_by, %s)"
        f" FROM old WHERE s.id = old.id RETURNING {', '.join('s.' + c for c in _COLUMNS)},"
        " old.acknowledged_at IS NULL",
        (site_id, alert_id, principal.name),
    ).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id} not found on site {site_id!r}")
    alert = _alert(row[:-1])
    if row[-1]:
        recorder(request).record(site_id, alert["service"], principal.name, "alert_ack", {"alert_id": alert_id})
    return alert
