"""The service catalogue: what each installed service is, reads and writes, who contributed it, where it runs.

A contributed service that is not shared yet appears only to its contributor's sites (and admins).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from registry.deps import DbDep, PageDep, PrincipalDep, StateDep
from registry.enablement import enablements_for_sites
from registry.pagination import page_list
from registry.sharing import sharing_of, visible_services

router = APIRouter(prefix="/api/v1/services", tags=["services"])


def _health(conn: DbDep) -> dict[str, dict[str, Any]]:
    rows = conn.execute("SELECT service, status, failures, last_error, last_error_at, last_success_at,"
                        " updated_at FROM service_health")
    keys = ("status", "failures", "last_error", "last_error_at", "last_success_at", "updated_at")
    return {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}


@router.get("")
def list_services(conn: DbDep, principal: PrincipalDep, state: StateDep, page: PageDep) -> dict[str, Any]:
    """Installed services with their declaration, credit, runner health, and stage on each site the caller sees."""
    visible = None if principal.is_admin else sorted(principal.sites)
    per_service: dict[str, list[dict[str, Any]]] = {}
    for switch in enablements_for_sites(conn, visible):
        per_service.setdefault(switch.service, []).append({
            "site_id": switch.site_id, "enabled": switch.enabled, "stage": switch.stage,
            "enabled_at": switch.enabled_at,
        })
    health = _health(conn)
    credit = sharing_of(conn, state.services)
    shown = visible_services(conn, state.services, principal)
    items = []
    for name, service in state.services.items():
        if name not in shown:
            continue
        runner = health.get(name)
        if runner is not None and not principal.is_admin:
            # an error message may quote another customer's data: operators only
            runner = {k: v for k, v in runner.items() if k not in ("last_error", "last_error_at")}
        items.append({**service.describe(), **credit[name].as_dict(), "sites": per_service.get(name, []),
                      "health": runner})
    return page_list(items, page, lambda item: (item["name"],), str)
