"""A site's needs backlog: read it by priority, raise a need, re-score or close one."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from registry.api.deps import DbDep, PageDep, PrincipalDep, SiteDep
from registry.needs import (
    NeedStatus,
    add_comment,
    add_need,
    list_needs,
    need_history,
    set_vote,
    update_need,
    votes_and_comments,
)
from sitepulse.errors import InvalidInput, NotFound

router = APIRouter(prefix="/api/v1/sites/{site_id}/needs", tags=["needs"])

_SERVICE = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
NeedId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class NewNeed(BaseModel):
    """A need in plain words, what it is worth (value) and costs (effort), and the service answering it if any."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000, description="the need, in the customer's words")
    value_score: int = Field(ge=1, le=10, description="1 (nice to have) to 10 (critical)")
    effort: int = Field(ge=1, le=10, description="1 (a day) to 10 (months)")
    service: str | None = Field(None, max_length=64, pattern=_SERVICE, description="the service that answers it")


class NeedChange(BaseModel):
    """Re-score a need, link or unlink the service that answers it, or close it."""

    model_config = ConfigDict(extra="forbid")

    value_score: int | None = Field(None, ge=1, le=10)
    effort: int | None = Field(None, ge=1, le=10)
    service: str | None = Field(None, max_length=64, pattern=_SERVICE, description="null with clear_service unlinks")
    clear_service: bool = False
    status: NeedStatus | None = None


@router.get("")
def get_needs(site_id: SiteDep, conn: DbDep, page: PageDep, principal: PrincipalDep,
              status_filter: Annotated[NeedStatus | None, Query(alias="status")] = None) -> dict[str, Any]:
    """The site's needs, highest priority (value / effort) first, with votes (and the caller's) and comments."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        rows = [n.as_dict() for n in list_needs(conn, site_id, status_filter, after, limit)]
        extra = votes_and_comments(conn, [n["id"] for n in rows], principal.name)
        return [{**n, **extra[n["id"]]} for n in rows]

    return page.fetch(read, priority=float, id=int)


@router.post("", status_code=status.HTTP_201_CREATED)
def post_need(site_id: SiteDep, need: NewNeed, conn: DbDep, principal: PrincipalDep) -> dict[str, Any]:
    """Raise a need for the site (customer or provider); the caller is recorded as who raised it."""
    if not need.text.strip():
        raise InvalidInput("body field 'text': say what the site needs, in plain words")
    return add_need(conn, site_id, need.text, principal.name, need.value_score, need.effort, need.service).as_dict()


@router.patch("/{need_id}")
def patch_need(site_id: SiteDep, need_id: NeedId, change: NeedChange, conn: DbDep,
               principal: PrincipalDep) -> dict[str, Any]:
    """Re-score a need, link the service that answers it, or mark it answered or dropped."""
    need = update_need(conn, site_id, need_id, value_score=change.value_score, effort=change.effort,
                       service=change.service, status=change.status, clear_service=change.clear_service,
                       changed_by=principal.name)
    if need is None:
        raise _missing(site_id, need_id)
    return need.as_dict()


def _missing(site_id: str, need_id: int) -> NotFound:
    return NotFound(f"need {need_id} not found on site {site_id!r}")


@router.put("/{need_id}/vote")
def vote(site_id: SiteDep, need_id: NeedId, conn: DbDep, principal: PrincipalDep) -> dict[str, Any]:
    """Vote for a need (one vote per person; voting again changes nothing)."""
    return _set_vote(conn, site_id, need_id, principal.name, True)


@router.delete("/{need_id}/vote")
def unvote(site_id: SiteDep, need_id: NeedId, conn: DbDep, principal: PrincipalDep) -> dict[str, Any]:
    """Take one's vote back."""
    return _set_vote(conn, site_id, need_id, principal.name, False)


def _set_vote(conn: psycopg.Connection, site_id: str, need_id: int, person: str, voted: bool) -> dict[str, Any]:
    votes = set_vote(conn, site_id, need_id, person, voted)
    if votes is None:
        raise _missing(site_id, need_id)
    return {"need_id": need_id, "votes": votes, "voted": voted}


class NewComment(BaseModel):
    """A comment on a need."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)


@router.post("/{need_id}/comments", status_code=status.HTTP_201_CREATED)
def comment(site_id: SiteDep, need_id: NeedId, body: NewComment, conn: DbDep,
            principal: PrincipalDep) -> dict[str, Any]:
    """Comment on a need; the caller is recorded as the author."""
    if not body.text.strip():
        raise InvalidInput("body field 'text': say something")
    made = add_comment(conn, site_id, need_id, principal.name, body.text)
    if made is None:
        raise _missing(site_id, need_id)
    return made


@router.get("/{need_id}/history")
def history(site_id: SiteDep, need_id: NeedId, conn: DbDep) -> dict[str, Any]:
    """A need's comments and audit trail (raised, changed with old and new values, voted, commented)."""
    found = need_history(conn, site_id, need_id)
    if found is None:
        raise _missing(site_id, need_id)
    return found
