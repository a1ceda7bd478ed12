"""Which customer a site belongs to: the unit a provider prices and shares contributed services by."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from registry.api.deps import AdminSiteDep, DbDep, SiteDep
from registry.sharing import customers, set_customer

router = APIRouter(prefix="/api/v1/sites/{site_id}/customer", tags=["sites"])


class CustomerChange(BaseModel):
    """The customer (company) that owns the site."""

    model_config = ConfigDict(extra="forbid")

    customer: str = Field(min_length=1, max_length=200, pattern=r"\S")


@router.put("")
def put_customer(site_id: AdminSiteDep, change: CustomerChange, conn: DbDep) -> dict[str, Any]:
    """Set the site's customer (admin)."""
    set_customer(conn, site_id, change.customer.strip())
    return {"site_id": site_id, "customer": change.customer.strip()}


@router.get("")
def get_customer(site_id: SiteDep, conn: DbDep) -> dict[str, Any]:
    """The site's customer, or null."""
    return {"site_id": site_id, "customer": customers(conn, [site_id]).get(site_id)}
