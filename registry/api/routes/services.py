"""``GET /api/v1/services``: the service catalogue (``registry/catalogue.py``), paginated by name, with the runner's
health of each (service, site) pair; ``POST .../sites/{site_id}/retry``: an admin ends a failing pair's back-off."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from microservices.pairs import pair_health, retry_now
from registry.api.deps import AdminSiteDep, DbDep, PageDep, PrincipalDep, ServiceDep, StateDep
from registry.catalogue import OPERATOR_ONLY, catalogue
from sitepulse.errors import NotFound

router = APIRouter(prefix="/api/v1/services", tags=["services"])


def _shown(health: dict[str, Any] | None, admin: bool) -> dict[str, Any] | None:
    """A pair's health; its error text to admins only (as the service's, registry/catalogue.py)."""
    if health is None or admin:
        return health
    return {k: v for k, v in health.items() if k not in (*OPERATOR_ONLY, "runner")}


@router.get("")
def list_services(conn: DbDep, principal: PrincipalDep, state: StateDep, page: PageDep) -> dict[str, Any]:
    """Installed services with their declaration, credit, runner health, and stage and health on each site the
    caller sees."""
    items = catalogue(conn, state.services, principal)
    per_pair = pair_health(conn)
    for item in items:
        for site in item["sites"]:
            site["health"] = _shown(per_pair.get((item["name"], site["site_id"])), principal.is_admin)
    return page.of_list(items, name=str)


@router.post("/{name}/sites/{site_id}/retry", responses={404: {"description": "the service never ran on the site"}})
def retry_pair(site_id: AdminSiteDep, service: ServiceDep, conn: DbDep) -> dict[str, Any]:
    """Retry a failing (service, site) pair now instead of after its back-off; returns the pair's health."""
    health = retry_now(conn, service.name, site_id)
    if health is None:
        raise NotFound(f"service {service.name!r} has not run on site {site_id!r}")
    return health
