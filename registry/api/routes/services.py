"""``GET /api/v1/services``: the service catalogue (``registry/catalogue.py``), paginated by name, with the runner's
health of each (service, site) pair; ``POST .../sites/{site_id}/retry``: an admin ends a failing pair's back-off."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from microservices.pairs import pair_health, retry_now
from microservices.progress import service_progress
from registry.api.deps import AdminSiteDep, DbDep, PageDep, PrincipalDep, ServiceDep, StateDep
from registry.catalogue import OPERATOR_ONLY, catalogue
from sitepulse.errors import NotFound

router = APIRouter(prefix="/api/v1/services", tags=["services"])


def _shown(health: dict[str, Any] | None, admin: bool) -> dict[str, Any] | None:
    """A pair's health; its error text to admins only (as the service's, registry/catalogue.py)."""
    if health is None or admin:
        return health
    return {k: v for k, v in health.items() if k not in (*OPERATOR_ONLY, "runner")}


def _progress(progress: Any) -> dict[str, Any] | None:
    """How far the service processed the site's telemetry: an import or a backlog shows here as it is caught up."""
    if progress is None:
        return None
    return {"data_until": progress.data_until, "lag_s": progress.lag_s, "rows_processed": progress.rows_processed}


@router.get("")
def list_services(conn: DbDep, principal: PrincipalDep, state: StateDep, page: PageDep) -> dict[str, Any]:
    """Installed services with their declaration, credit, runner health, and stage, health and progress (telemetry
    processed up to when) on each site the caller sees."""
    items = catalogue(conn, state.services, principal)
    per_pair = pair_health(conn)
    done = {(p.service, p.site_id): p for p in service_progress(conn)}
    for item in items:
        for site in item["sites"]:
            site["health"] = _shown(per_pair.get((item["name"], site["site_id"])), principal.is_admin)
            site["progress"] = _progress(done.get((item["name"], site["site_id"])))
    return page.of_list(items, name=str)


@router.post("/{name}/sites/{site_id}/retry", responses={404: {"description": "the service never ran on the site"}})
def retry_pair(site_id: AdminSiteDep, service: ServiceDep, conn: DbDep) -> dict[str, Any]:
    """Retry a failing (service, site) pair now instead of after its back-off; returns the pair's health."""
    health = retry_now(conn, service.name, site_id)
    if health is None:
        raise NotFound(f"service {service.name!r} has not run on site {site_id!r}")
    return health
