"""A site's alarms (the services' alerts): list and filter them, acknowledge with a comment, clear, comment,
read each one's history, and the site's notification rules (registry/alerts.py, registry/alarms.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from registry import alerts
from registry.api.deps import DbDep, PageDep, PrincipalDep, SiteDep, StateDep
from sitepulse.errors import InvalidInput

BIGINT_MAX = 2**63 - 1
AlertId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
State = Literal["active", "acknowledged", "cleared"]
Level = Literal["info", "warning", "critical"]

router = APIRouter(prefix="/api/v1/sites/{site_id}/alerts", tags=["alerts"])
rules_router = APIRouter(prefix="/api/v1/sites/{site_id}/alarm-rules", tags=["alerts"])


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
    return page.fetch(lambda before, limit: alerts.list_alerts(
        conn, site_id, open_only=open_only, service=service, state=state, machine_id=machine_id, zone=zone,
        level=level, before=before, limit=limit), created_at=datetime, id=int)


@router.post("/{alert_id}/ack")
def acknowledge_alert(site_id: SiteDep, alert_id: AlertId, conn: DbDep, principal: PrincipalDep, state: StateDep,
                      body: Annotated[Acknowledgement | None, Body()] = None) -> dict[str, Any]:
    """Acknowledge an alarm, with an optional comment; acknowledging twice keeps the first acknowledgement
    (a later comment is added to the history instead).

    The first acknowledgement is an ``alert_ack`` usage event of the alarm's service.
    """
    comment = (body.comment or "").strip() or None if body else None
    alert, first = alerts.acknowledge(conn, site_id, alert_id, principal.name, comment)
    if first:
        state.usage.record(site_id, alert["service"], principal.name, "alert_ack", {"alert_id": alert_id})
    return alert


@router.post("/{alert_id}/clear")
def clear_alert(site_id: SiteDep, alert_id: AlertId, body: Clearance, conn: DbDep,
                principal: PrincipalDep) -> dict[str, Any]:
    """Clear an alarm by hand, saying why; clearing a cleared alarm changes nothing (409)."""
    return alerts.clear(conn, site_id, alert_id, principal.name, body.reason.strip())


@router.post("/{alert_id}/comments", status_code=status.HTTP_201_CREATED)
def comment_alert(site_id: SiteDep, alert_id: AlertId, body: Comment, conn: DbDep,
                  principal: PrincipalDep) -> dict[str, Any]:
    """Add a comment to an alarm's history (e.g. what was found on site)."""
    alerts.one_alert(conn, site_id, alert_id)
    if not body.comment.strip():
        raise InvalidInput("body field 'comment': say something")
    alerts.add_comment(conn, site_id, alert_id, principal.name, body.comment.strip())
    return {"alert_id": alert_id, "comment": body.comment.strip(), "by": principal.name}


@router.get("/{alert_id}/history")
def alert_history(site_id: SiteDep, alert_id: AlertId, conn: DbDep) -> dict[str, Any]:
    """The alarm and every change of its state, oldest first: raised, notified, escalated, acknowledged,
    commented, cleared; who, when, and any comment."""
    return alerts.history(conn, site_id, alert_id)


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


@rules_router.get("")
def list_rules(site_id: SiteDep, conn: DbDep) -> dict[str, Any]:
    """The site's notification rules, by name."""
    return {"items": alerts.list_rules(conn, site_id)}


@rules_router.post("", status_code=status.HTTP_201_CREATED)
def add_rule(site_id: SiteDep, rule: NewRule, conn: DbDep, principal: PrincipalDep, state: StateDep
             ) -> dict[str, Any]:
    """Add a notification rule to the site (audited as a usage event); it applies to alarms raised from now on.
    A webhook goes to public addresses only, unless the operator approved its host (registry/webhooks.py)."""
    if rule.webhook_url and (problem := state.webhooks.refusal(str(rule.webhook_url))):
        raise InvalidInput(problem)
    return alerts.add_rule(conn, site_id, principal.name, name=rule.name.strip(), min_level=rule.min_level,
                           service=rule.service, notify=rule.notify.strip(), escalate_after_s=rule.escalate_after_s,
                           escalate_to=rule.escalate_to,
                           webhook_url=str(rule.webhook_url) if rule.webhook_url else None)


@rules_router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rule(site_id: SiteDep, rule_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)], conn: DbDep,
                principal: PrincipalDep) -> None:
    """Remove a notification rule (audited as a usage event)."""
    alerts.delete_rule(conn, site_id, rule_id, principal.name)
