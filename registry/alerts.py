"""A site's alarms as people handle them: list and filter, acknowledge, clear by hand, comment, read the
history; and the site's notification rules (the supervisor that acts on them is ``registry/alarms.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from registry.alarms import LEVELS, alarm_state
from sitepulse.errors import Conflict, InvalidInput, NotFound

COLUMNS = ("id", "service", "key", "level", "at", "machine_id", "zone", "message", "data", "created_at",
           "published_at", "acknowledged_at", "acknowledged_by", "ack_comment", "cleared_at", "cleared_by",
           "clear_reason", "escalation_level", "escalated_at")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM service_alerts"
_STATE_SQL = {"active": "cleared_at IS NULL AND acknowledged_at IS NULL",
              "acknowledged": "cleared_at IS NULL AND acknowledged_at IS NOT NULL",
              "cleared": "cleared_at IS NOT NULL"}
RULE_COLUMNS = ("id", "name", "min_level", "service", "notify", "escalate_after_s", "escalate_to", "webhook_url",
                "created_by", "created_at", "updated_at")
_EVENT_COLUMNS = ("id", "at", "action", "actor", "comment", "detail")


def _alert(row: tuple) -> dict[str, Any]:
    alert = dict(zip(COLUMNS, row, strict=True))
    alert["state"] = alarm_state(alert["acknowledged_at"], alert["cleared_at"])
    return alert


def list_alerts(conn: psycopg.Connection, site_id: str, *, open_only: bool = False, service: str | None = None,
                state: str | None = None, machine_id: str | None = None, zone: str | None = None,
                level: str | None = None, before: tuple[datetime, int] | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
    """Alarms of the site newest first, filtered; ``before`` is the (created_at, id) to continue after."""
    rows = conn.execute(
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
         "level": level, "levels": list(LEVELS), "after_at": before[0] if before else None,
         "after_id": before[1] if before else None, "limit": limit},
    ).fetchall()
    return [_alert(row) for row in rows]


def alerts_between(conn: psycopg.Connection, site_id: str, start: datetime, end: datetime,
                   limit: int) -> list[dict[str, Any]]:
    """Alarms of the site that happened in [start, end) (by ``at``, not by when they were stored: a shift processed
    late still has its alarms), oldest first."""
    rows = conn.execute(f"{_SELECT} WHERE site_id = %s AND at >= %s AND at < %s ORDER BY at, id LIMIT %s",
                        (site_id, start, end, limit)).fetchall()
    return [_alert(row) for row in rows]


def one_alert(conn: psycopg.Connection, site_id: str, alert_id: int) -> dict[str, Any]:
    """One alarm of the site, or NotFound."""
    row = conn.execute(f"{_SELECT} WHERE site_id = %s AND id = %s", (site_id, alert_id)).fetchone()
    if row is None:
        raise NotFound(f"alert {alert_id} not found on site {site_id!r}")
    return _alert(row)


def acknowledge(conn: psycopg.Connection, site_id: str, alert_id: int, who: str,
                comment: str | None) -> tuple[dict[str, Any], bool]:
    """Acknowledge an alarm (the first acknowledgement stays; a later comment goes to the history).

    Returns the alarm and whether this call was its first acknowledgement."""
    row = conn.execute(
        "WITH old AS (SELECT id, acknowledged_at FROM service_alerts WHERE site_id = %s AND id = %s FOR UPDATE)"
        " UPDATE service_alerts s SET acknowledged_at = COALESCE(s.acknowledged_at, now()),"
        " acknowledged_by = COALESCE(s.acknowledged_by, %s),"
        " ack_comment = CASE WHEN s.acknowledged_at IS NULL THEN %s ELSE s.ack_comment END"
        f" FROM old WHERE s.id = old.id RETURNING {', '.join('s.' + c for c in COLUMNS)},"
        " old.acknowledged_at IS NULL",
        (site_id, alert_id, who, comment),
    ).fetchone()
    if row is None:
        raise NotFound(f"alert {alert_id} not found on site {site_id!r}")
    first = bool(row[-1])
    if not first and comment:
        add_comment(conn, site_id, alert_id, who, comment)
    return _alert(row[:-1]), first


def clear(conn: psycopg.Connection, site_id: str, alert_id: int, who: str, reason: str) -> dict[str, Any]:
    """Clear an alarm by hand with the reason; an alarm already cleared is a Conflict."""
    current = one_alert(conn, site_id, alert_id)
    if current["cleared_at"] is not None:
        raise Conflict(f"alert {alert_id} was already cleared at {current['cleared_at']:%Y-%m-%d %H:%M:%S}")
    conn.execute("UPDATE service_alerts SET cleared_at = now(), cleared_by = %s, clear_reason = %s"
                 " WHERE id = %s AND cleared_at IS NULL", (who, reason, alert_id))
    return one_alert(conn, site_id, alert_id)


def add_comment(conn: psycopg.Connection, site_id: str, alert_id: int, who: str, comment: str) -> None:
    """A comment in the alarm's history."""
    conn.execute("INSERT INTO alarm_events (alert_id, site_id, action, actor, comment)"
                 " VALUES (%s, %s, 'commented', %s, %s)", (alert_id, site_id, who, comment))


def history(conn: psycopg.Connection, site_id: str, alert_id: int) -> dict[str, Any]:
    """The alarm and every change of its state, oldest first."""
    alert = one_alert(conn, site_id, alert_id)
    rows = conn.execute(f"SELECT {', '.join(_EVENT_COLUMNS)} FROM alarm_events WHERE alert_id = %s"
                        " ORDER BY at, id", (alert_id,)).fetchall()
    return {"alert": alert, "items": [dict(zip(_EVENT_COLUMNS, r, strict=True)) for r in rows]}


def list_rules(conn: psycopg.Connection, site_id: str) -> list[dict[str, Any]]:
    """The site's notification rules, by name."""
    rows = conn.execute(f"SELECT {', '.join(RULE_COLUMNS)} FROM alarm_rules WHERE site_id = %s ORDER BY name",
                        (site_id,)).fetchall()
    return [dict(zip(RULE_COLUMNS, r, strict=True)) for r in rows]


def add_rule(conn: psycopg.Connection, site_id: str, who: str, *, name: str, min_level: str, service: str | None,
             notify: str, escalate_after_s: int | None, escalate_to: str | None,
             webhook_url: str | None) -> dict[str, Any]:
    """Add a notification rule (audited with the change); a rule of that name already there is a Conflict."""
    if (escalate_after_s is None) != (escalate_to is None):
        raise InvalidInput("escalate_after_s and escalate_to go together: say after how long, and to whom")
    row = conn.execute(
        "INSERT INTO alarm_rules (site_id, name, min_level, service, notify, escalate_after_s, escalate_to,"
        " webhook_url, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" ON CONFLICT (site_id, name) DO NOTHING RETURNING {', '.join(RULE_COLUMNS)}",
        (site_id, name, min_level, service, notify, escalate_after_s, escalate_to, webhook_url, who),
    ).fetchone()
    if row is None:
        raise Conflict(f"site {site_id!r} already has a rule named {name!r}")
    created = dict(zip(RULE_COLUMNS, row, strict=True))
    _audit_rule(conn, site_id, service, who, "alarm_rule_added", created["id"], created["name"])
    return created


def delete_rule(conn: psycopg.Connection, site_id: str, rule_id: int, who: str) -> None:
    """Remove a notification rule (audited with the change)."""
    row = conn.execute("DELETE FROM alarm_rules WHERE site_id = %s AND id = %s RETURNING name, service",
                       (site_id, rule_id)).fetchone()
    if row is None:
        raise NotFound(f"alarm rule {rule_id} not found on site {site_id!r}")
    _audit_rule(conn, site_id, row[1], who, "alarm_rule_removed", rule_id, row[0])


def _audit_rule(conn: psycopg.Connection, site_id: str, service: str | None, who: str, action: str, rule_id: int,
                name: str) -> None:
    """A rule change is written with the change itself (the usage recorder may drop events under load)."""
    conn.execute("INSERT INTO usage_events (at, site_id, service, principal, action, detail)"
                 " VALUES (now(), %s, %s, %s, %s, %s)",
                 (site_id, service, who, action, Jsonb({"rule_id": rule_id, "name": name})))
