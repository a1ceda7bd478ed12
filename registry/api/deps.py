"""Who is calling and what a route may address, as ``Annotated`` aliases so signatures read like sentences.

| alias | gives | refuses |
|---|---|---|
| ``DbDep`` | the request's pooled connection, committed before the response | |
| ``StateDep`` | the app's shared objects (services, pool, metrics) | |
| ``PrincipalDep`` | the caller | 401 |
| ``AdminDep`` | the caller, an admin | 401, 403 |
| ``SiteScopeDep`` | a site id the caller may address, existing or not | 401, 404 |
| ``SiteDep`` | an existing site the caller may see | 401, 404 |
| ``AdminSiteScopeDep`` / ``AdminSiteDep`` | the same, for admins only | 401, 404, then 403 |
| ``ServiceDep`` | the installed service named in the path | 404 |
| ``PageDep`` | ``limit`` and the decoded ``cursor`` | 422, 400 |

Refusals are raised as the kernel's errors (``NotAuthenticated``, ``NotAllowed``, ``NotFound``);
``registry/api/errors.py`` gives them their status codes.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import Depends, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from microservices.sdk import PageDep, Service
from registry.api.state import AppState, DbDep, app_state
from registry.tokens import Principal, authenticate
from sitepulse.errors import NotAllowed, NotAuthenticated, NotFound, SitePulseError
from sitepulse.sites import SITE_ID, check_site_id, site_exists

bearer = HTTPBearer(
    auto_error=False, scheme_name="bearer",
    description="`Authorization: Bearer <token>`; create tokens with `sitepulse tokens create`.",
)

StateDep = Annotated[AppState, Depends(app_state)]


def unauthorised() -> NotAuthenticated:
    """The one answer for a missing, unknown or revoked token."""
    return NotAuthenticated("missing or invalid bearer token")


def site_not_found(site_id: str) -> NotFound:
    """The one answer for a site that does not exist and for a site the caller may not see."""
    return NotFound(f"site {site_id!r} not found")


def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    conn: DbDep,
    state: StateDep,
) -> Principal:
    """The caller, or 401 when the bearer token is missing, unknown or revoked."""
    if credentials is None or not credentials.credentials:
        raise unauthorised()
    principal = authenticate(conn, credentials.credentials, state.admin_token_hash)
    if principal is None:
        raise unauthorised()
    return principal


def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """The caller when it holds an admin token; 403 for a valid site token."""
    if not principal.is_admin:
        raise NotAllowed("this needs an admin token")
    return principal


def site_scope(
    site_id: Annotated[str, Path(description="site id: 1-64 characters of letters, digits, '_', '.', '-'")],
    principal: Annotated[Principal, Depends(current_principal)],
) -> str:
    """A site id the caller may address (whether or not it exists yet); others are 404.

    The length is checked here, not by ``Path(max_length=...)``: a path validation error would skip
    this dependency but not the service routes' ``service_request``, which then found no context (500).
    """
    if len(site_id) > 64:
        raise SitePulseError("site id must be 1-64 characters of letters, digits, '_', '.', '-'")
    if SITE_ID.match(site_id):  # other characters are a site that does not exist (404 below)
        check_site_id(site_id)  # ids made only of dots: 422
    if not principal.can_see(site_id):
        raise site_not_found(site_id)
    return site_id


def existing_site(
    site_id: Annotated[str, Depends(site_scope)],
    conn: DbDep,
) -> str:
    """A site the caller may see and that exists; 404 otherwise, with the same words either way."""
    if not (SITE_ID.match(site_id) and site_exists(conn, site_id)):
        raise site_not_found(site_id)
    return site_id


def admin_on_site(
    site_id: Annotated[str, Depends(existing_site)],
    principal: Annotated[Principal, Depends(current_principal)],
) -> str:
    """An existing site the caller may see, changed by an admin: 404 first, then 403."""
    admin_principal(principal)
    return site_id


def admin_on_site_scope(
    site_id: Annotated[str, Depends(site_scope)],
    principal: Annotated[Principal, Depends(current_principal)],
) -> str:
    """A site id the caller may address (it may not exist yet), changed by an admin: 404, then 403."""
    admin_principal(principal)
    return site_id


def installed_service(state: StateDep, name: str) -> Service:
    """The installed service of that name, or 404."""
    service = state.services.get(name)
    if service is None:
        raise NotFound(f"service {name!r} is not installed")
    return service


def visible_sites(conn: psycopg.Connection, principal: Principal, site_id: str | None) -> list[str] | None:
    """The sites a report covers: the one asked for (404 unless visible and existing), else all the caller sees."""
    if site_id is not None:
        if not principal.can_see(site_id) or not site_exists(conn, site_id):
            raise site_not_found(site_id)
        return [site_id]
    return None if principal.is_admin else sorted(principal.sites)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
ServiceDep = Annotated[Service, Depends(installed_service)]
AdminDep = Annotated[Principal, Depends(admin_principal)]
SiteScopeDep = Annotated[str, Depends(site_scope)]
SiteDep = Annotated[str, Depends(existing_site)]
AdminSiteScopeDep = Annotated[str, Depends(admin_on_site_scope)]
AdminSiteDep = Annotated[str, Depends(admin_on_site)]

__all__ = [
    "AdminDep", "AdminSiteDep", "AdminSiteScopeDep", "DbDep", "PageDep", "PrincipalDep", "ServiceDep", "SiteDep",
    "SiteScopeDep", "StateDep", "bearer", "installed_service", "site_not_found", "visible_sites",
]
