"""The service catalogue: what each installed service is, reads and writes, who contributed it, where it runs.

A contributed service that is not shared yet appears only to its contributor's sites (and admins).
"""

from __future__ import annotations

from typing import Any

import psycopg

from microservices.progress import runner_health
from microservices.sdk import Service
from registry.enablement import enablements_for_sites
from registry.sharing import sharing_of, visible_services
from registry.tokens import Principal

OPERATOR_ONLY = ("last_error", "last_error_at")  # an error message may quote another customer's data


def catalogue(conn: psycopg.Connection, services: dict[str, Service], principal: Principal) -> list[dict[str, Any]]:
    """Installed services the caller may see: declaration, credit, runner health, stage on each visible site."""
    visible = None if principal.is_admin else sorted(principal.sites)
    per_service: dict[str, list[dict[str, Any]]] = {}
    for switch in enablements_for_sites(conn, visible):
        per_service.setdefault(switch.service, []).append({
            "site_id": switch.site_id, "enabled": switch.enabled, "stage": switch.stage,
            "enabled_at": switch.enabled_at,
        })
    health = runner_health(conn)
    credit = sharing_of(conn, services)
    shown = visible_services(conn, services, principal)
    items = []
    for name, service in services.items():
        if name not in shown:
            continue
        runner = health.get(name)
        if runner is not None and not principal.is_admin:
            runner = {k: v for k, v in runner.items() if k not in OPERATOR_ONLY}
        items.append({**service.describe(), **credit[name].as_dict(), "sites": per_service.get(name, []),
                      "health": runner})
    return items
