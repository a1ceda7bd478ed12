"""``GET /api/v1/usage``: the usage report per customer, site and service over a period (admin), JSON or CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from microservices.sdk import as_utc
from registry.api.deps import AdminDep, DbDep, StateDep, visible_sites
from registry.api.state import record_export
from registry.reports import by_customer, usage_csv, usage_report

router = APIRouter(prefix="/api/v1", tags=["usage"])


@router.get("/usage", responses={200: {"content": {"text/csv": {}}}})
def get_usage(
    conn: DbDep, admin: AdminDep, state: StateDep, request: Request,
    start: Annotated[datetime | None, Query(alias="from", description="RFC 3339, inclusive; default to - 30 days")]
    = None,
    end: Annotated[datetime | None, Query(alias="to", description="RFC 3339, exclusive; default now")] = None,
    site_id: Annotated[str | None, Query(max_length=64, description="one site; default every site")] = None,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Any:
    """Active days, users, calls, card views, exports, alerts, machines covered and volume handled, per
    customer, site and service, for pricing per use."""
    end = as_utc(end, "to") or datetime.now(UTC)
    start = as_utc(start, "from") or end - timedelta(days=30)
    sites = visible_sites(conn, admin, site_id)
    items = usage_report(conn, state.services, start, end, sites)
    for site in sorted({item["site_id"] for item in items}):
        record_export(request, site, None, admin, "usage report", fmt)
    if fmt == "csv":
        return Response(usage_csv(items), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="usage.csv"'})
    return {"from": start, "to": end, "items": items, "by_customer": by_customer(items)}
