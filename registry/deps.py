"""``Annotated`` dependency aliases, so route signatures read like sentences (``site_id: SiteDep``).

| alias | gives | refuses |
|---|---|---|
| ``DbDep`` | the request's pooled connection, committed before the response | |
| ``StateDep`` | the app's shared objects (services, pool, metrics) | |
| ``PrincipalDep`` | the caller | 401 |
| ``AdminDep`` | the caller, an admin | 401, 403 |
| ``SiteScopeDep`` | a site id the caller may address, existing or not | 401, 404 |
| ``SiteDep`` | an existing site the caller may see | 401, 404 |
| ``AdminSiteScopeDep`` / ``AdminSiteDep`` | the same, for admins only | 401, 404, then 403 |
| ``PageDep`` | ``limit`` and the decoded ``cursor`` | 422, 400 |
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from registry.auth import (
    Principal,
    admin_on_site,
    admin_on_site_scope,
    admin_principal,
    current_principal,
    existing_site,
    site_scope,
)
from registry.pagination import PageDep
from registry.state import AppState, DbDep, app_state

StateDep = Annotated[AppState, Depends(app_state)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
AdminDep = Annotated[Principal, Depends(admin_principal)]
SiteScopeDep = Annotated[str, Depends(site_scope)]
SiteDep = Annotated[str, Depends(existing_site)]
AdminSiteScopeDep = Annotated[str, Depends(admin_on_site_scope)]
AdminSiteDep = Annotated[str, Depends(admin_on_site)]

__all__ = [
    "AdminDep", "AdminSiteDep", "AdminSiteScopeDep", "DbDep", "PageDep", "PrincipalDep", "SiteDep",
    "SiteScopeDep", "StateDep",
]
