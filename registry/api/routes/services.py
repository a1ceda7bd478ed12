"""``GET /api/v1/services``: the service catalogue (``registry/catalogue.py``), paginated by name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from registry.api.deps import DbDep, PageDep, PrincipalDep, StateDep
from registry.catalogue import catalogue

router = APIRouter(prefix="/api/v1/services", tags=["services"])


@router.get("")
def list_services(conn: DbDep, principal: PrincipalDep, state: StateDep, page: PageDep) -> dict[str, Any]:
    """Installed services with their declaration, credit, runner health, and stage on each site the caller sees."""
    return page.of_list(catalogue(conn, state.services, principal), name=str)
