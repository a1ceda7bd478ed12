"""Bearer tokens scoped to sites: issue, store hashed, revoke, and turn a presented token into a Principal.

Two roles. An ``admin`` token sees every site and may change the catalogue, sites and
tokens. A ``site`` token sees only the sites listed on it; any other site answers 404, the
same as a site that does not exist, so a token never learns which other sites exist.
The bootstrap admin token from ``SITEPULSE_ADMIN_TOKEN`` is never stored: only its hash is
kept in memory and compared in constant time. The HTTP side (reading the header, 401/403/404)
is ``registry/api/deps.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from sitepulse.errors import InvalidInput, SitePulseError
from sitepulse.sites import check_site_id

TOKEN_PREFIX = "sp_"
Role = Literal["admin", "site"]
BOOTSTRAP_ADMIN = "bootstrap-admin"
MAX_NAME = 200


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
    if len(name) > MAX_NAME:
        raise InvalidInput(f"a token name may be at most {MAX_NAME} characters")
    if name.casefold() == BOOTSTRAP_ADMIN:  # audit trails would attribute its actions to the bootstrap admin
        raise InvalidInput(f"{BOOTSTRAP_ADMIN!r} is reserved for the SITEPULSE_ADMIN_TOKEN; choose another name")
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
