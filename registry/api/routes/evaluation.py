"""``GET /api/v1/evaluation``: adoption and value KPIs before/after enablement, and a recommendation per service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from registry.api.deps import DbDep, PrincipalDep, StateDep, visible_sites
from registry.api.state import record_export
from registry.evaluation import Rules, evaluate, evaluation_body, evaluation_csv
from sitepulse.errors import SitePulseError

router = APIRouter(prefix="/api/v1", tags=["evaluation"])


@router.get("/evaluation", responses={200: {"content": {"text/csv": {}}}})
def get_evaluation(
    conn: DbDep, principal: PrincipalDep, state: StateDep, request: Request,
    site_id: Annotated[str | None, Query(max_length=64, description="one site; default: every site you see")] = None,
    window_days: Annotated[int, Query(ge=2, le=365, description="days compared on each side")] = Rules.window_days,
    as_of: Annotated[datetime | None, Query(description="evaluate as at this time (RFC 3339); default now")] = None,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Any:
    """Per site and service: adoption, each declared KPI before vs after enablement with a bootstrap interval,
    and ``scale``/``iterate``/``retire`` with the rules that produced it."""
    if as_of is not None and as_of.tzinfo is None:
        raise SitePulseError("as_of must carry a time zone, e.g. 2026-11-23T06:00:00Z")
    sites = visible_sites(conn, principal, site_id)
    rules = Rules(window_days=window_days)
    moment = as_of or datetime.now(UTC)
    items = evaluate(conn, state.services, sites, as_of=moment, rules=rules)
    for site in sorted({item["site_id"] for item in items}):
        record_export(request, site, None, principal, "evaluation", fmt)
    if fmt == "csv":
        return Response(evaluation_csv(items), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="evaluation.csv"'})
    return evaluation_body(items, moment, rules)
