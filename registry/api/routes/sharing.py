"""Sharing a contributed service with every customer, credited to its contributor (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from registry.api.deps import AdminDep, DbDep, ServiceDep, StateDep
from registry.sharing import set_sharing, sharing_of

router = APIRouter(prefix="/api/v1/services", tags=["services"])


class SharingChange(BaseModel):
    """Shared with every customer or not, and optionally who contributed it (a customer name)."""

    model_config = ConfigDict(extra="forbid")

    shared: bool
    contributed_by: str | None = Field(None, min_length=1, max_length=200, pattern=r"\S",
                                       description="register the contributing customer; null keeps it")


@router.put("/{name}/sharing")
def put_sharing(admin: AdminDep, service: ServiceDep, change: SharingChange, conn: DbDep,
                state: StateDep) -> dict[str, Any]:
    """Mark a service shared (every site's catalogue shows it, credited) or private to its contributor."""
    contributor = change.contributed_by.strip() if change.contributed_by else None
    set_sharing(conn, service.name, shared=change.shared, by=admin.name, contributed_by=contributor)
    return {"service": service.name, **sharing_of(conn, {service.name: service})[service.name].as_dict()}


@router.get("/{name}/sharing")
def get_sharing(admin: AdminDep, service: ServiceDep, conn: DbDep) -> dict[str, Any]:
    """Who contributed the service and whether it is shared (admin)."""
    return {"service": service.name, **sharing_of(conn, {service.name: service})[service.name].as_dict()}
