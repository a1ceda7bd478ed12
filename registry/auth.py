"""Bearer tokens scoped to sites: issue, store hashed, revoke, and turn a request into a Principal.

Two roles. An ``admin`` token sees every site and may change the catalogue, sites and
tokens. A ``site`` token sees only the sites listed on it; any other site answers 404, the
same as a site that does not exist, so a token never learns which other sites exist.
The bootstrap admin token from ``SITEPULSE_ADMIN_TOKEN`` is never stored: only its hash is
kept in memory and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Depends, HTTPException, Path, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from registry.state import AppState, DbDep, app_state
from sitepulse.errors import SitePulseError
from sitepulse.sites import SITE_ID, check_site_id

TOKEN_PREFIX = "sp_"
Role = Literal["admin", "site"]
BOOTSTRAP_ADMIN = "bootstrap-admin"

bearer = HTTPBearer(
    auto_error=False, scheme_name="bearer",
    description="`Authorization: Bearer <token>`; create tokens with `sitepulse tokens create`.",
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name, its role and the sites it may see (admin: all)."""

    name: str
    role: Role
    sites: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_see(self, site_id: str) -> bool:
        return self.is_admin or site_id in self.sites


@dataclass(frozen=True)
class IssuedToken:
    """A newly created token: the plain value exists only here, once."""

    id: int
    token: str
    name: str
    role: Role
    sites: tuple[str, ...]


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: tokens are 256-bit random values, so a fast hash is enough (no KDF)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: psycopg.Connection, name: str, sites: list[str] | tuple[str, ...],
                 role: Role = "site") -> IssuedToken:
    """Store a new token's hash and return the token, which cannot be recovered afterwards."""
    if role not in ("admin", "site"):
        raise SitePulseError(f"token role must be 'admin' or 'site', not {role!r}")
    name = name.strip()
    if not name:
        raise SitePulseError("a token needs a name (who or what uses it)")
    sites = tuple(dict.fromkeys(check_site_id(s) for s in sites))
    if role == "site" and not sites:
        raise SitePulseError("a site token needs at least one site")
    if role == "admin" and sites:
        raise SitePulseError("an admin token sees every site; do not list sites for it")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO api_tokens (name, token_hash, role, sites) VALUES (%s, %s, %s, %s) RETURNING id",
        (name, hash_token(token), role, list(sites)),
    ).fetchone()
    assert row is not None
    return IssuedToken(row[0], token, name, role, sites)


def revoke_token(conn: psycopg.Connection, token_id: int) -> bool:
    """Revoke a token by id; False when there is no such live token."""
    row = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING id",
        (token_id,),
    ).fetchone()
    return row is not None


def list_tokens(conn: psycopg.Connection, after_id: int = 0,
                limit: int | None = None) -> list[dict[str, Any]]:
    """Tokens by id (never their hashes)."""
    rows = conn.execute(
        "SELECT id, name, role, sites, created_at, last_used_at, revoked_at FROM api_tokens"
        " WHERE id > %s ORDER BY id LIMIT %s",
        (after_id, limit),
    ).fetchall()
    keys = ("id", "name", "role", "sites", "created_at", "last_used_at", "revoked_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def authenticate(conn: psycopg.Connection, token: str, admin_token_hash: str | None) -> Principal | None:
    """The Principal a presented token stands for, or None when it is unknown or revoked."""
    digest = hash_token(token)
    if admin_token_hash is not None and hmac.compare_digest(digest, admin_token_hash):
        return Principal(BOOTSTRAP_ADMIN, "admin")
    # An indexed lookup by digest: timing reveals nothing useful, as callers cannot choose digests.
    # last_used_at is written at most once a minute per token, so reads stay cheap.
    row = conn.execute(
        "WITH hit AS (SELECT id, name, role, sites, last_used_at FROM api_tokens"
        "             WHERE token_hash = %s AND revoked_at IS NULL),"
        " touch AS (UPDATE api_tokens t SET last_used_at = now() FROM hit WHERE t.id = hit.id"
        "           AND (hit.last_used_at IS NULL OR hit.last_used_at < now() - interval '1 minute'))"
        " SELECT name, role, sites FROM hit",
        (digest,),
    ).fetchone()
    if row is None:
        return None
    return Principal(row[0], row[1], frozenset(row[2]))


# --- dependencies ------------------------------------------------------------------------------

def _unauthorised() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token",
                         headers={"WWW-Authenticate": "Bearer"})


def site_not_found(site_id: str) -> HTTPException:
    """The one answer for a site that does not exist and for a site the caller may not see."""
    return HTTPException(status.HTTP_404_NOT_FOUND, f"site {site_id!r} not found")


def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    conn: DbDep,
    state: Annotated[AppState, Depends(app_state)],
) -> Principal:
    """The caller, or 401 when the bearer token is missing, unknown or revoked."""
    if credentials is None or not credentials.credentials:
        raise _unauthorised()
    principal = authenticate(conn, credentials.credentials, state.admin_token_hash)
    if principal is None:
        raise _unauthorised()
    return principal


def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """The caller when it holds an admin token; 403 for a valid site token."""
    if not principal.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs an admin token")
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
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "site id must be 1-64 characters of letters, digits, '_', '.', '-'")
    if not principal.can_see(site_id):
        raise site_not_found(site_id)
    return site_id


def existing_site(
    site_id: Annotated[str, Depends(site_scope)],
    conn: DbDep,
) -> str:
    """A site the caller may see and that exists; 404 otherwise, with the same words either way."""
    exists = SITE_ID.match(site_id) and conn.execute(
        "SELECT 1 FROM sites WHERE site_id = %s", (site_id,)).fetchone() is not None
    if not exists:
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

