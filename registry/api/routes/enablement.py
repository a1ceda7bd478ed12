"""Switching services on and off per site, with their lifecycle stage and settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from registry.api.deps import AdminDep, AdminSiteDep, DbDep, PageDep, SiteDep, StateDep, installed_service
from registry.enablement import Enablement, set_enablement, site_enablements
from registry.lifecycle import Stage
from registry.sharing import check_usable_on_site

router = APIRouter(prefix="/api/v1/sites/{site_id}/services", tags=["enablement"])


class EnablementChange(BaseModel):
    """Body of a switch: on or off, and optionally a new lifecycle stage (with why) and new settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool
    stage: Stage | None = Field(None, description="a lifecycle stage (pilot or live to run); null keeps it. "
                                "Switching on a service without a stage pilots it")
    reason: str | None = Field(None, min_length=1, max_length=2000,
                               description="why the stage changes (kept in the stage history)")
    settings: dict[str, Any] | None = Field(None, description="the service's settings; null keeps them")


@router.put("/{name}", responses={409: {"description": "a dependency is not enabled, or a dependant is; the "
                                        "stage does not allow it; or the service is not shared with this site"},
                                  404: {"description": "unknown site or service"}})
def put_enablement(site_id: AdminSiteDep, name: str, change: EnablementChange, conn: DbDep,
                   state: StateDep, admin: AdminDep) -> dict[str, Any]:
    """Switch a service on or off for a site (admin), keeping dependencies enabled and the lifecycle legal."""
    service = installed_service(state, name)
    if change.enabled or change.stage is not None:
        check_usable_on_site(conn, state.services, name, site_id)  # NotShared: 409
    switch = set_enablement(conn, state.services, site_id, name, enabled=change.enabled, stage=change.stage,
                            settings=change.settings, changed_by=admin.name, reason=change.reason)
    return switch.as_dict(service)


@router.get("")
def list_enablement(site_id: SiteDep, conn: DbDep, state: StateDep, page: PageDep) -> dict[str, Any]:
    """Every installed service's switch, stage and effective settings on this site."""
    current = site_enablements(conn, site_id)
    items = [(current.get(name) or Enablement(site_id, name)).as_dict(service)
             for name, service in state.services.items()]
    return page.of_list(items, service=str)
