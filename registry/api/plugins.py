"""Mounting each service's own router under ``/api/v1/sites/{site_id}/{name}``, guarded.

Every route a service adds is reachable only with a token that sees the site (else 404,
as for any site route) and only while the service is enabled for that site (else 404
naming both). Before the service's route runs, the guard puts the SDK's ``ServiceRequest``
on ``request.state.sitepulse``: the site id, the request's database connection and the
service's validated settings for that site, and the services switched on there. Services read it with the SDK's
``ServiceRequestDep``; they never import the registry. Each call that passes the guard is
recorded as an ``api_call`` usage event (queued, written off the request path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request

from microservices.sdk import Service, ServiceRequest
from registry.api.deps import current_principal, existing_site
from registry.api.metrics import RequestMetrics
from registry.api.state import DbDep, app_state
from registry.enablement import InvalidSettings, effective_settings, site_enablements
from registry.tokens import Principal
from sitepulse.errors import Conflict, NotFound, SitePulseError

SERVICE_PREFIX = "/api/v1/sites/{site_id}/"
# names under a site the contract keeps for the registry even where it serves no route yet
CONTRACT_NAMES = frozenset({"services", "alerts", "view", "usage", "evaluation", "machines"})


def site_route_names(routers: list[APIRouter]) -> frozenset[str]:
    """The first path segment under a site of every registry route: no service may take one of these names."""
    names = {route.path.removeprefix(SERVICE_PREFIX).split("/")[0]
             for router in routers for route in router.routes
             if getattr(route, "path", "").startswith(SERVICE_PREFIX)}
    return frozenset(names) | CONTRACT_NAMES


def enabled_service_guard(service: Service) -> Callable[..., None]:
    """A router-level dependency: site visible, service enabled there, context stored for the route."""

    def guard(
        request: Request,
        site_id: Annotated[str, Depends(existing_site)],
        principal: Annotated[Principal, Depends(current_principal)],
        conn: DbDep,
    ) -> None:
        enabled = {name: switch for name, switch in site_enablements(conn, site_id).items() if switch.enabled}
        switch = enabled.get(service.name)
        if switch is None:
            raise NotFound(f"service {service.name!r} is not enabled for site {site_id!r}")
        try:
            settings = effective_settings(service, switch.settings or {})
        except InvalidSettings as exc:
            raise Conflict(f"{exc}; the stored settings no longer fit this version, PUT them again") from None
        request.state.sitepulse = ServiceRequest(site_id, service.name, conn, settings, principal.name,
                                                 frozenset(enabled))
        app_state(request).usage.record(site_id, service.name, principal.name, "api_call",
                                 {"method": request.method, "path": request.url.path})

    guard.__name__ = f"{service.schema}_enabled"
    return guard


def mount_service_routers(app: FastAPI, services: dict[str, Service], metrics: RequestMetrics,
                          reserved: frozenset[str] = CONTRACT_NAMES) -> list[str]:
    """Include every service's router; returns the names that had one."""
    mounted = []
    for name, service in services.items():
        router: Any = service.router()
        if router is None:
            continue
        if name in reserved:
            raise SitePulseError(f"micro-service {name!r}: the name is reserved for the registry's own "
                                 f"site routes ({', '.join(sorted(reserved))}); rename the service")
        if not isinstance(router, APIRouter):
            raise TypeError(f"micro-service {name!r}: router() must return a fastapi.APIRouter or None")
        prefix = SERVICE_PREFIX + name
        app.include_router(router, prefix=prefix, tags=[name],
                           dependencies=[Depends(enabled_service_guard(service))])
        for route in router.routes:
            path = getattr(route, "path", None)
            if path is not None:
                metrics.templates[id(route)] = prefix + path
        mounted.append(name)
    return mounted
