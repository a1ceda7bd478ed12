"""Switching services on and off per site, with their stage and settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from microservices.sdk import Service
from registry.deps import AdminSiteDep, DbDep, PageDep, SiteDep, StateDep
from registry.enablement import (
    Enablement,
    EnablementConflict,
    InvalidSettings,
    set_enablement,
    site_enablements,
)
from registry.pagination import page_list

router = APIRouter(prefix="/api/v1/sites/{site_id}/services", tags=["enablement"])


class EnablementChange(BaseModel):
    """Body of a switch: on or off, and optionally a new stage and new settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool
    stage: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                              description="e.g. trial, adopted; null keeps the current stage")
    settings: dict[str, Any] | None = Field(None, description="the service's settings; null keeps them")


def _service(state: StateDep, name: str) -> Service:
    service = state.services.get(name)
    if service is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"service {name!r} is not installed")
    return service


@router.put("/{name}", responses={409: {"description": "a dependency is not enabled, or a dependant is"},
                                  404: {"description": "unknown site or service"}})
def put_enablement(site_id: AdminSiteDep, name: str, change: EnablementChange, conn: DbDep,
                   state: StateDep) -> dict[str, Any]:
    """Switch a service on or off for a site (admin), keeping every service's dependencies enabled."""
    service = _service(state, name)
    try:
        switch = set_enablement(conn, state.services, site_id, name, enabled=change.enabled,
                                stage=change.stage, settings=change.settings)
    except EnablementConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except InvalidSettings as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return switch.as_dict(service)


@router.get("")
def list_enablement(site_id: SiteDep, conn: DbDep, state: StateDep, page: PageDep) -> dict[str, Any]:
    """Every installed service's switch, stage and effective settings on this site."""
    current = site_enablements(conn, site_id)
    items = [(current.get(name) or Enablement(site_id, name)).as_dict(service)
             for name, service in state.services.items()]
    return page_list(items, page, lambda item: (item["service"],), str)
