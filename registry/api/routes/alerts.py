"""A site's alarms (the services' alerts): list and filter them, acknowledge with a comment, clear, comment,
read each one's history, and the site's notification rules (see registry/alarms.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, status
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from registry.alarms import LEVELS, alarm_state
from registry.api.deps import DbDep, PageDep, PrincipalDep, SiteDep, StateDep
from sitepulse.errors import Conflict, InvalidInput, NotFound

BIGINT_MAX = 2**63 - 1
AlertId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
State = Literal["active", "acknowledged", "cleared"]
Level = Literal["info", "warning", "critical"]

router = APIRouter(prefix="/api/v1/sites/{site_id}/alerts", tags=["alerts"])
rules_router = APIRouter(prefix="/api/v1/sites/{site_id}/alarm-rules", tags=["alerts"])

_COLUMNS = ("id", "service", "key", "level", "at", "machine_id", "zone", "message", "data", "created_at",
            "published_at", "acknowledged_at", "acknowledged_by", "ack_comment", "cleared_at", "cleared_by",
            "clear_reason", "escalation_level", "escalated_at")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM service_alerts"
_STATE_SQL = {"active": "cleared_at IS NULL AND acknowledged_at IS NULL",
              "acknowledged": "cleared_at IS NULL AND acknowledged_at IS NOT NULL",
              "cleared": "cleared_at IS NOT NULL"}


def _alert(row: tuple) -> dict[str, Any]:
    alert = dict(zip(_COLUMNS, row, strict=True))
    alert["state"] = alarm_state(alert["acknowledged_at"], alert["cleared_at"])
    return alert


class Comment(BaseModel):
    """A few words kept in the alarm's history."""

    model_config = ConfigDict(extra="forbid")

    comment: str = Field(min_length=1, max_length=2000)


class Acknowledgement(BaseModel):
    """An acknowledgement, optionally saying what is being done about it."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(None, max_length=2000, description="e.g. 'driver called back to the road'")


class Clearance(BaseModel):
    """Clearing by hand: the condition is over and someone says why (auto-clear does this by itself)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=2000)


@router.get("")
def list_alerts(
    site_id: SiteDep, conn: DbDep, page: PageDep,
    open_only: Annotated[bool, Query(alias="open", description="only alarms not yet acknowledged")] = False,
    service: Annotated[str | None, Query(description="only this service's alarms")] = None,
    state: Annotated[State | None, Query(description="active, acknowledged (still on) or cleared")] = None,
    machine_id: Annotated[str | None, Query(max_length=64, description="a machine's alarm history")] = None,
    zone: Annotated[str | None, Query(max_length=64, description="a zone's alarm history")] = None,
    level: Annotated[Level | None, Query(description="only alarms at least this severe")] = None,
) -> dict[str, Any]:
    """Alarms raised on the site, newest first; filter by state, machine, zone, severity or service."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        return [_alert(row) for row in conn.execute(
            f"{_SELECT} WHERE site_id = %(site)s"
            " AND (NOT %(open)s OR acknowledged_at IS NULL)"
            " AND (%(service)s::text IS NULL OR service = %(service)s)"
            " AND (%(machine)s::text IS NULL OR machine_id = %(machine)s OR data ->> 'machine_b' = %(machine)s)"
            " AND (%(zone)s::text IS NULL OR zone = %(zone)s)"
            " AND (%(level)s::text IS NULL OR array_position(%(levels)s::text[], level)"
            "      >= array_position(%(levels)s::text[], %(level)s))"
            f" AND {_STATE_SQL[state] if state else 'true'}"
            " AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) < (%(after_at)s, %(after_id)s))"
            " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
            {"site": site_id, "open": open_only, "service": service, "machine": machine_id, "zone": zone,
             "level": level, "levels": list(LEVELS), "after_at": after[0] if after else None,
             "after_id": after[1] if after else None, "limit": limit},
        ).fetchall()]

    return page.fetch(read, created_at=datetime, id=int)


def _one(conn: Any, site_id: str, alert_id: int) -> dict[str, Any]:
    row = conn.execute(f"{_SELECT} WHERE site_id = %s AND id = %s", (site_id, alert_id)).fetchone()
    if row is None:
        raise NotFound(f"alert {alert_id} not found on site {site_id!r}")
    return _alert(row)


@router.post("/{alert_id}/ack")
def acknowledge_alert(site_id: SiteDep, alert_id: AlertId, conn: DbDep, principal: PrincipalDep, state: StateDep,
                      body: Annotated[Acknowledgement | None, Body()] = None) -> dict[str, Any]:
    """Acknowledge an alarm, with an optional comment; acknowledging twice keeps the first acknowledgement
    (a later comment is added to the history instead).

    The first acknowledgement is an ``alert_ack`` usage event of the alarm's service.
    """
    comment = (body.comment or "").strip() or None if body else None
    row = conn.execute(
        "WITH old AS (SELECT id, acknowledged_at FROM service_alerts WHERE site_id = %s AND id = %s FOR UPDATE)"
        " UPDATE service_alerts s SET acknowledged_at = COALESCE(s.acknowledged_at, now()),"
        " acknowledged_by = COALESCE(s.acknowledged_by, %s),"
        " ack_comment = CASE WHEN s.acknowledged_at IS NULL THEN %s ELSE s.ack_comment END"
        f" FROM old WHERE s.id = old.id RETURNING {', '.join('s.' + c for c in _COLUMNS)},"
        " old.acknowledged_at IS NULL",
        (site_id, alert_id, principal.name, comment),
    ).fetchone()
    if row is None:
        raise NotFound(f"alert {alert_id} not found on site {site_id!r}")
    alert = _alert(row[:-1])
    if row[-1]:
        state.usage.record(site_id, alert["service"], principal.name, "alert_ack", {"alert_id": alert_id})
    elif comment:
        _comment(conn, site_id, alert_id, principal.name, comment)
    return alert


@router.post("/{alert_id}/clear")
def clear_alert(site_id: SiteDep, alert_id: AlertId, body: Clearance, conn: DbDep,
                principal: PrincipalDep) -> dict[str, Any]:
    """Clear an alarm by hand, saying why; clearing a cleared alarm changes nothing (409)."""
    current = _one(conn, site_id, alert_id)
    if current["cleared_at"] is not None:
        raise Conflict(f"alert {alert_id} was already cleared at {current['cleared_at']:%Y-%m-%d %H:%M:%S}")
    conn.execute("UPDATE service_alerts SET cleared_at = now(), cleared_by = %s, clear_reason = %s"
                 " WHERE id = %s AND cleared_at IS NULL", (principal.name, body.reason.strip(), alert_id))
    return _one(conn, site_id, alert_id)


def _comment(conn: Any, site_id: str, alert_id: int, who: str, comment: str) -> None:
    conn.execute("INSERT INTO alarm_events (alert_id, site_id, action, actor, comment)"
                 " VALUES (%s, %s, 'commented', %s, %s)", (alert_id, site_id, who, comment))


@router.post("/{alert_id}/comments", status_code=status.HTTP_201_CREATED)
def comment_alert(site_id: SiteDep, alert_id: AlertId, body: Comment, conn: DbDep,
                  principal: PrincipalDep) -> dict[str, Any]:
    """Add a comment to an alarm's history (e.g. what was found on site)."""
    _one(conn, site_id, alert_id)
    if not body.comment.strip():
        raise InvalidInput("body field 'comment': say something")
    _comment(conn, site_id, alert_id, principal.name, body.comment.strip())
    return {"alert_id": alert_id, "comment": body.comment.strip(), "by": principal.name}


@router.get("/{alert_id}/history")
def alert_history(site_id: SiteDep, alert_id: AlertId, conn: DbDep) -> dict[str, Any]:
    """The alarm and every change of its state, oldest first: raised, notified, escalated, acknowledged,
    commented, cleared; who, when, and any comment."""
    alert = _one(conn, site_id, alert_id)
    rows = conn.execute("SELECT id, at, action, actor, comment, detail FROM alarm_events WHERE alert_id = %s"
                        " ORDER BY at, id", (alert_id,)).fetchall()
    keys = ("id", "at", "action", "actor", "comment", "detail")
    return {"alert": alert, "items": [dict(zip(keys, r, strict=True)) for r in rows]}


class NewRule(BaseModel):
    """Who hears of which alarms on this site, and who is told when nobody acknowledges in time."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    min_level: Level = "warning"
    service: str | None = Field(None, max_length=64, pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
    notify: str = Field(min_length=1, max_length=200, description="who is told, e.g. 'shift supervisor'")
    escalate_after_s: int | None = Field(None, ge=10, le=7 * 86400)
    escalate_to: str | None = Field(None, min_length=1, max_length=200)
    webhook_url: HttpUrl | None = Field(None, description="each notification is POSTed here as JSON")


_RULE_COLUMNS = ("id", "name", "min_level", "service", "notify", "escalate_after_s", "escalate_to", "webhook_url",
                 "created_by", "created_at", "updated_at")


@rules_router.get("")
def list_rules(site_id: SiteDep, conn: DbDep) -> dict[str, Any]:
    """The site's notification rules, by name."""
    rows = conn.execute(f"SELECT {', '.join(_RULE_COLUMNS)} FROM alarm_rules WHERE site_id = %s ORDER BY name",
                        (site_id,)).fetchall()
    return {"items": [dict(zip(_RULE_COLUMNS, r, strict=True)) for r in rows]}


@rules_router.post("", status_code=status.HTTP_201_CREATED)
def add_rule(site_id: SiteDep, rule: NewRule, conn: DbDep, principal: PrincipalDep) -> dict[str, Any]:
    """Add a notification rule to the site (audited as a usage event); it applies to alarms raised from now on."""
    if (rule.escalate_after_s is None) != (rule.escalate_to is None):
        raise InvalidInput("escalate_after_s and escalate_to go together: say after how long, and to whom")
    row = conn.execute(
        "INSERT INTO alarm_rules (site_id, name, min_level, service, notify, escalate_after_s, escalate_to,"
        " webhook_url, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" ON CONFLICT (site_id, name) DO NOTHING RETURNING {', '.join(_RULE_COLUMNS)}",
        (site_id, rule.name.strip(), rule.min_level, rule.service, rule.notify.strip(), rule.escalate_after_s,
         rule.escalate_to, str(rule.webhook_url) if rule.webhook_url else None, principal.name),
    ).fetchone()
    if row is None:
        raise Conflict(f"site {site_id!r} already has a rule named {rule.name!r}")
    created = dict(zip(_RULE_COLUMNS, row, strict=True))
    _audit_rule(conn, site_id, rule.service, principal.name, "alarm_rule_added", created["id"], created["name"])
    return created


@rules_router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rule(site_id: SiteDep, rule_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)], conn: DbDep,
                principal: PrincipalDep) -> None:
    """Remove a notification rule (audited as a usage event)."""
    row = conn.execute("DELETE FROM alarm_rules WHERE site_id = %s AND id = %s RETURNING name, service",
                       (site_id, rule_id)).fetchone()
    if row is None:
        raise NotFound(f"alarm rule {rule_id} not found on site {site_id!r}")
    _audit_rule(conn, site_id, row[1], principal.name, "alarm_rule_removed", rule_id, row[0])


def _audit_rule(conn: Any, site_id: str, service: str | None, who: str, action: str, rule_id: int,
                name: str) -> None:
    """A rule change is written with the change itself (the usage recorder may drop events under load)."""
    conn.execute("INSERT INTO usage_events (at, site_id, service, principal, action, detail)"
                 " VALUES (now(), %s, %s, %s, %s, %s)",
                 (site_id, service, who, action, Jsonb({"rule_id": rule_id, "name": name})))


