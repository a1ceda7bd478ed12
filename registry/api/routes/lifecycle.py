"""A service's lifecycle stage on a site: move it along the co-creation process, and read why it moved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from registry.api.deps import AdminDep, AdminSiteDep, DbDep, PageDep, PrincipalDep, ServiceDep, SiteDep, StateDep
from registry.board import lifecycle_board
from registry.enablement import set_enablement as change_switch
from registry.enablement import site_enablements
from registry.lifecycle import NEXT_STAGES, Stage, lifecycle_rules, stage_history
from registry.sharing import check_usable_on_site
from sitepulse.errors import InvalidInput

router = APIRouter(prefix="/api/v1/sites/{site_id}/services", tags=["lifecycle"])
board_router = APIRouter(prefix="/api/v1/sites/{site_id}/lifecycle", tags=["lifecycle"])


class StageChangeRequest(BaseModel):
    """A move along the lifecycle, with the reason kept in the audit trail."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage
    reason: str = Field(min_length=3, max_length=2000, description="why, in plain words (kept in the history)")


@router.put("/{name}/stage", responses={409: {"description": "the lifecycle does not allow this move"}})
def put_stage(site_id: AdminSiteDep, change: StageChangeRequest, conn: DbDep, state: StateDep, admin: AdminDep,
              service: ServiceDep) -> dict[str, Any]:
    """Move a service to another lifecycle stage on a site (admin); leaving pilot/live switches it off."""
    reason = change.reason.strip()
    if len(reason) < 3:
        raise InvalidInput("body field 'reason': say why, in a few words")
    check_usable_on_site(conn, state.services, service.name, site_id)  # each refusal is a Conflict: 409
    switch = change_switch(conn, state.services, site_id, service.name, enabled=None, stage=change.stage,
                           changed_by=admin.name, reason=reason)
    return {**switch.as_dict(service), "next_stages": list(NEXT_STAGES[switch.stage])}


@router.get("/{name}/stage-history")
def get_stage_history(site_id: SiteDep, conn: DbDep, page: PageDep,
                      service: ServiceDep) -> dict[str, Any]:
    """Every stage change of the service on the site, oldest first: from, to, who, when and why."""
    body = page.fetch(lambda after, limit: [c.as_dict() for c in stage_history(conn, site_id, service.name, after,
                                                                               limit)],
                      changed_at=datetime, id=int)
    switch = site_enablements(conn, site_id).get(service.name)
    stage = switch.stage if switch else None
    return {**body, "stage": stage, "next_stages": list(NEXT_STAGES[stage]), "rules": lifecycle_rules()}


@board_router.get("")
def get_board(site_id: SiteDep, conn: DbDep, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """The site's co-creation lifecycle on one board: needs (who raised them, votes, value/effort, comments),
    prioritised, in development, implemented (since when, by whom, where else), evaluated (latest verdict),
    retired; and the contributed services with who contributed them and where they run."""
    return lifecycle_board(conn, state.services, site_id, principal)
