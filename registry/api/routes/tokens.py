"""API tokens (admin only): issue one, list them without their secrets, revoke one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from registry.api.deps import AdminDep, DbDep, PageDep
from registry.tokens import create_token, list_tokens, revoke_token
from sitepulse.errors import NotFound

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


class TokenRequest(BaseModel):
    """A token to issue: who uses it, its role, and the sites a site token may see."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Literal["site", "admin"] = "site"
    sites: list[str] = Field(default_factory=list, max_length=1000)


@router.post("", status_code=status.HTTP_201_CREATED)
def issue_token(request: TokenRequest, conn: DbDep, admin: AdminDep) -> dict[str, Any]:
    """Create a token; the response is the only time its value is shown."""
    issued = create_token(conn, request.name, request.sites, request.role)
    return {"id": issued.id, "name": issued.name, "role": issued.role, "sites": list(issued.sites),
            "token": issued.token}


@router.get("")
def get_tokens(conn: DbDep, admin: AdminDep, page: PageDep) -> dict[str, Any]:
    """Tokens by id: name, role, sites and use, never the token or its hash."""
    return page.fetch(lambda after, limit: list_tokens(conn, after_id=after[0] if after else 0, limit=limit), id=int)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_token(token_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: DbDep, admin: AdminDep) -> None:
    """Revoke a token; it stops working at once."""
    if not revoke_token(conn, token_id):
        raise NotFound(f"no live token with id {token_id}")
