"""The needs backlog of a site: what the customer needs in plain words, ranked by value over effort.

Co-creation starts here: a need is raised (by the customer or the provider), scored for
value (1-10, what it is worth to the site) and effort (1-10, what it costs to build), and
ranked by priority = value / effort. When a service answers it, the need names the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import psycopg

from microservices.sdk import NAME_PATTERN
from sitepulse.errors import SitePulseError

NeedStatus = Literal["open", "answered", "dropped"]
STATUSES = ("open", "answered", "dropped")
_COLUMNS = ("id", "site_id", "text", "raised_by", "value_score", "effort", "priority", "service", "status",
            "created_at", "updated_at")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM needs"


@dataclass(frozen=True)
class Need:
    """One backlog entry; ``priority`` is value_score / effort, computed by the database."""

    id: int
    site_id: str
    text: str
    raised_by: str
    value_score: int
    effort: int
    priority: Decimal
    service: str | None
    status: str
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "priority": float(self.priority)}


def _check(text: str | None, value_score: int | None, effort: int | None, service: str | None,
           status: str | None) -> None:
    if text is not None and not text.strip():
        raise SitePulseError("a need needs a text: what the site needs, in plain words")
    for label, score in (("value_score", value_score), ("effort", effort)):
        if score is not None and not 1 <= score <= 10:
            raise SitePulseError(f"{label} must be between 1 and 10, not {score}")
    if service is not None and not NAME_PATTERN.match(service):
        raise SitePulseError(f"service {service!r} is not a service name (lower-case words joined by '-')")
    if status is not None and status not in STATUSES:
        raise SitePulseError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")


def add_need(conn: psycopg.Connection, site_id: str, text: str, raised_by: str, value_score: int, effort: int,
             service: str | None = None, raised_at: datetime | None = None) -> Need:
    """Add a need to a site's backlog (raised now, or at ``raised_at`` for a history loaded afterwards)."""
    _check(text, value_score, effort, service, None)
    row = conn.execute(
        "INSERT INTO needs (site_id, text, raised_by, value_score, effort, service, created_at)"
        f" VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, now())) RETURNING {', '.join(_COLUMNS)}",
        (site_id, text.strip(), raised_by, value_score, effort, service, raised_at),
    ).fetchone()
    assert row is not None
    return Need(*row)


def update_need(conn: psycopg.Connection, site_id: str, need_id: int, *, value_score: int | None = None,
                effort: int | None = None, service: str | None = None, status: str | None = None,
                clear_service: bool = False, changed_by: str | None = None) -> Need | None:
    """Re-score a need, link the service that answers it, or close it; None when there is no such need.

    The change is audited (``need_changes``, by trigger) under ``changed_by``."""
    _check(None, value_score, effort, service, status)
    row = conn.execute(
        "UPDATE needs SET value_score = COALESCE(%(value)s, value_score), effort = COALESCE(%(effort)s, effort),"
        " service = CASE WHEN %(clear)s THEN NULL ELSE COALESCE(%(service)s, service) END,"
        " status = COALESCE(%(status)s, status), updated_at = now(), updated_by = %(by)s"
        f" WHERE site_id = %(site)s AND id = %(id)s RETURNING {', '.join(_COLUMNS)}",
        {"value": value_score, "effort": effort, "service": service, "status": status, "clear": clear_service,
         "site": site_id, "id": need_id, "by": changed_by},
    ).fetchone()
    return Need(*row) if row else None


def list_needs(conn: psycopg.Connection, site_id: str, status: str | None = None,
               after: tuple[float, int] | None = None, limit: int | None = None) -> list[Need]:
    """A site's needs, highest priority first (oldest first among equals), optionally of one status."""
    _check(None, None, None, None, status)
    rows = conn.execute(
        f"{_SELECT} WHERE site_id = %(site)s AND (%(status)s::text IS NULL OR status = %(status)s)"
        " AND (%(p)s::numeric IS NULL OR priority < %(p)s OR (priority = %(p)s AND id > %(id)s))"
        " ORDER BY priority DESC, id LIMIT %(limit)s",
        {"site": site_id, "status": status, "p": after[0] if after else None, "id": after[1] if after else None,
         "limit": limit},
    ).fetchall()
    return [Need(*row) for row in rows]


def _exists(conn: psycopg.Connection, site_id: str, need_id: int) -> bool:
    return conn.execute("SELECT 1 FROM needs WHERE site_id = %s AND id = %s", (site_id, need_id)).fetchone() is not None


def set_vote(conn: psycopg.Connection, site_id: str, need_id: int, principal: str, vote: bool) -> int | None:
    """Vote for a need (once per person) or take the vote back; the need's vote count, None if no such need."""
    if not _exists(conn, site_id, need_id):
        return None
    if vote:
        conn.execute("INSERT INTO need_votes (need_id, principal) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (need_id, principal))
    else:
        conn.execute("DELETE FROM need_votes WHERE need_id = %s AND principal = %s", (need_id, principal))
    return conn.execute("SELECT count(*) FROM need_votes WHERE need_id = %s", (need_id,)).fetchone()[0]


def votes_and_comments(conn: psycopg.Connection, need_ids: list[int], principal: str
                       ) -> dict[int, dict[str, Any]]:
    """Per need: votes, whether ``principal`` voted, and how many comments."""
    rows = conn.execute(
        "SELECT n.id, (SELECT count(*) FROM need_votes v WHERE v.need_id = n.id),"
        " EXISTS (SELECT 1 FROM need_votes v WHERE v.need_id = n.id AND v.principal = %s),"
        " (SELECT count(*) FROM need_comments c WHERE c.need_id = n.id)"
        " FROM unnest(%s::bigint[]) AS n(id)", (principal, need_ids)).fetchall()
    return {r[0]: {"votes": r[1], "voted": r[2], "comments": r[3]} for r in rows}


def add_comment(conn: psycopg.Connection, site_id: str, need_id: int, author: str, text: str
                ) -> dict[str, Any] | None:
    """Comment on a need (audited); None when there is no such need on the site."""
    if not text.strip():
        raise SitePulseError("a comment needs a text")
    if not _exists(conn, site_id, need_id):
        return None
    row = conn.execute("INSERT INTO need_comments (need_id, author, text) VALUES (%s, %s, %s)"
                       " RETURNING id, need_id, author, text, at", (need_id, author, text.strip())).fetchone()
    return dict(zip(("id", "need_id", "author", "text", "at"), row, strict=True))


def need_history(conn: psycopg.Connection, site_id: str, need_id: int) -> dict[str, Any] | None:
    """A need's comments and its audit trail (raised, changed, voted, commented), oldest first."""
    if not _exists(conn, site_id, need_id):
        return None
    comments = conn.execute("SELECT id, author, text, at FROM need_comments WHERE need_id = %s ORDER BY at, id",
                            (need_id,)).fetchall()
    changes = conn.execute("SELECT at, actor, action, detail FROM need_changes WHERE need_id = %s ORDER BY at, id",
                           (need_id,)).fetchall()
    return {"comments": [dict(zip(("id", "author", "text", "at"), c, strict=True)) for c in comments],
            "changes": [dict(zip(("at", "actor", "action", "detail"), c, strict=True)) for c in changes]}
