"""Alarms on top of the services' alerts: states, acknowledge and clear, auto-clear, notification rules, escalation.

An alert row (``service_alerts``) is an alarm with three facts that make its state: acknowledged (by whom, with
what comment), cleared (when the condition ended, or by hand) and escalated (nobody acknowledged in time). Every
state change is a row in ``alarm_events`` (the raise, acknowledgement and clear are written by triggers, so no path
escapes the audit; notifications and escalations by the supervisor here).

The supervisor runs in the API process every few seconds (one instance at a time, by advisory lock):

- auto-clear: an active alarm clears when its condition has ended, as the raising service said through the SDK
  (``Outputs.clear(key, at, reason)``: the machine left the restricted zone, the encounter ended, the overloaded
  hauler dumped; or an ``Alert`` raised with ``ended_at``: speeding episodes are raised once they are over);
- notify: each alarm matching a site's rule (level at least the rule's, same service if the rule names one) is
  notified once to the rule's audience (an ``alarm_events`` row; POSTed to the rule's webhook when it has one,
  where registry/webhooks.py allows, each site's webhooks on a worker of their own with a time budget);
- escalate: an alarm still active and unacknowledged ``escalate_after_s`` after it was raised is escalated once
  per rule to the rule's ``escalate_to``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from microservices.alerts import ended_alerts
from registry.webhooks import WEBHOOK_TIMEOUT_S, SiteQueues, WebhookPolicy, WebhookSender, approved_hosts
from sitepulse.settings import get_settings

log = logging.getLogger(__name__)

LEVELS = ("info", "warning", "critical")
SUPERVISOR_LOCK = 0x5172_0A1A  # pg advisory lock id: one supervisor per database
SUPERVISE_EVERY_S = 5.0
SITE_BUDGET_S = 10.0  # a site's webhooks may take this long per supervisor pass; the rest are not sent
MAX_DELIVERY_WORKERS = 16
NOTIFY_LOOKBACK = "1 day"  # alarms older than this are not notified any more (e.g. after a long outage)


def acknowledge_history(conn: psycopg.Connection, site_id: str, before: datetime, by: str, comment: str,
                        left_open_every: int = 7) -> None:
    """Date a loaded history's alarms (the demo's) as delivered when they happened and acknowledged four minutes
    later by ``by``, except one in ``left_open_every`` (by id) left unacknowledged, so the board has both kinds."""
    conn.execute("UPDATE service_alerts SET published_at = coalesce(at, published_at),"
                 " acknowledged_at = CASE WHEN id %% %(n)s <> 0"
                 "  THEN coalesce(at, created_at) + interval '4 minutes' END,"
                 " acknowledged_by = CASE WHEN id %% %(n)s <> 0 THEN %(by)s END,"
                 " ack_comment = CASE WHEN id %% %(n)s <> 0 THEN %(comment)s END"
                 " WHERE site_id = %(site)s AND at < %(before)s AND acknowledged_at IS NULL",
                 {"n": left_open_every, "by": by, "comment": comment, "site": site_id, "before": before})


def alarm_state(acknowledged_at: Any, cleared_at: Any) -> str:
    """active (condition on, nobody acknowledged), acknowledged (condition on), cleared (condition over)."""
    if cleared_at is not None:
        return "cleared"
    return "acknowledged" if acknowledged_at is not None else "active"


def auto_clear(conn: psycopg.Connection, now: datetime) -> int:
    """Clear every active alarm whose condition has ended by ``now``; returns how many (audited by the trigger).

    The raising service says when its condition ended, through the SDK (an ``Alert`` with ``ended_at`` or
    ``Outputs.clear``; microservices/alerts.py stores it): the same rule for built-in services and plugins, and
    nothing here reads a service's own tables. An end still in the future (a simulation ahead of the clock)
    waits for its time."""
    ended = ended_alerts(conn, now)
    if not ended:
        return 0
    with conn.transaction():
        rows = conn.execute(
            "UPDATE service_alerts s SET cleared_at = e.at, cleared_by = 'auto-clear', clear_reason = e.reason"
            " FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[]) AS e(id, at, reason)"
            " WHERE s.id = e.id AND s.cleared_at IS NULL RETURNING s.id",
            ([r[0] for r in ended], [r[1] for r in ended], [r[2] for r in ended]),
        ).fetchall()
    log.debug("auto-cleared %d alarms", len(rows))
    return len(rows)


@dataclass(frozen=True)
class Notification:
    """One message to a rule's audience about one alarm (also the webhook's JSON body)."""

    kind: str  # notified | escalated
    rule_id: int
    rule: str
    to: str
    alert: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "to": self.to, "alarm": self.alert}


Deliver = Callable[[Notification, str | None], str | None]  # returns an error, or None when delivered

_RULE_MATCH = """
    FROM service_alerts a
    JOIN alarm_rules r ON r.site_id = a.site_id AND (r.service IS NULL OR r.service = a.service)
     AND array_position(%(levels)s::text[], a.level) >= array_position(%(levels)s::text[], r.min_level)"""
_ALERT_FIELDS = ("a.id, a.site_id, a.service, a.level, a.machine_id, a.zone, a.message, a.created_at,"
                 " a.acknowledged_at, a.cleared_at")


def _alert(row: tuple) -> dict[str, Any]:
    keys = ("id", "site_id", "service", "level", "machine_id", "zone", "message", "created_at", "acknowledged_at",
            "cleared_at")
    alert = dict(zip(keys, row, strict=True))
    alert["state"] = alarm_state(alert["acknowledged_at"], alert["cleared_at"])
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in alert.items()}


def _pending(conn: psycopg.Connection, now: datetime) -> list[Notification]:
    """Alarms matching a rule and not yet notified under it, then unacknowledged ones due for escalation."""
    params = {"levels": list(LEVELS), "now": now}
    rule_fields = "r.id, r.name, r.notify, r.escalate_to, r.webhook_url"
    new = conn.execute(
        f"SELECT {rule_fields}, {_ALERT_FIELDS} {_RULE_MATCH}"
        f" WHERE a.created_at >= greatest(r.created_at, %(now)s - interval '{NOTIFY_LOOKBACK}')"
        " AND NOT EXISTS (SELECT 1 FROM alarm_events e WHERE e.alert_id = a.id AND e.action = 'notified'"
        "  AND (e.detail ->> 'rule_id')::bigint = r.id) ORDER BY a.id, r.id", params).fetchall()
    due = conn.execute(
        f"SELECT {rule_fields}, {_ALERT_FIELDS} {_RULE_MATCH}"
        " WHERE r.escalate_after_s IS NOT NULL AND a.cleared_at IS NULL AND a.acknowledged_at IS NULL"
        " AND a.created_at <= %(now)s - make_interval(secs => r.escalate_after_s)"
        " AND a.created_at >= r.created_at - make_interval(secs => r.escalate_after_s)"
        " AND NOT EXISTS (SELECT 1 FROM alarm_events e WHERE e.alert_id = a.id AND e.action = 'escalated'"
        "  AND (e.detail ->> 'rule_id')::bigint = r.id) ORDER BY a.id, r.id", params).fetchall()
    out = [Notification("notified", r[0], r[1], r[2], {**_alert(r[5:]), "webhook": r[4]}) for r in new]
    out += [Notification("escalated", r[0], r[1], r[3], {**_alert(r[5:]), "webhook": r[4]}) for r in due]
    return out


def post_webhook(notification: Notification, url: str | None) -> str | None:
    """POST the notification as JSON to the rule's webhook where this process's settings allow
    (registry/webhooks.py); the error in a few words, or None."""
    approved = approved_hosts(get_settings().webhook_approved_hosts)
    return WebhookSender(WebhookPolicy(approved))(notification, url)


def site_queues(deliver: Deliver, site_budget_s: float = SITE_BUDGET_S) -> SiteQueues:
    """Per-site delivery queues for ``deliver``; a round waits at most the budget and one webhook's timeouts."""
    return SiteQueues(deliver, site_budget_s, site_budget_s + 3 * WEBHOOK_TIMEOUT_S, MAX_DELIVERY_WORKERS)


def notify_and_escalate(conn: psycopg.Connection, now: datetime, deliver: Deliver | SiteQueues = post_webhook) -> int:
    """Send what is due under the sites' rules and audit each send; returns how many were sent. Webhooks go out
    per site (``SiteQueues``; a plain ``deliver`` gets queues for this call only)."""
    notes: list[tuple[Notification, str | None]] = []
    for note in _pending(conn, now):
        alert = dict(note.alert)
        url = alert.pop("webhook")
        notes.append((Notification(note.kind, note.rule_id, note.rule, note.to, alert), url))
    queues = deliver if isinstance(deliver, SiteQueues) else site_queues(deliver)
    try:
        errors = queues.deliver([(note.alert["site_id"], note, url) for note, url in notes])
    finally:
        if queues is not deliver:
            queues.close()
    sent = 0
    for (note, url), error in zip(notes, errors, strict=True):
        alert = note.alert
        with conn.transaction():
            conn.execute(
                "INSERT INTO alarm_events (alert_id, site_id, at, action, actor, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (alert["id"], alert["site_id"], now, note.kind, "alarm supervisor",
                 Jsonb({"rule_id": note.rule_id, "rule": note.rule, "to": note.to, "webhook": bool(url),
                        "delivered": error is None, **({"error": error} if error else {})})))
            if note.kind == "escalated":
                conn.execute("UPDATE service_alerts SET escalation_level = escalation_level + 1, escalated_at = %s"
                             " WHERE id = %s", (now, alert["id"]))
        sent += 1
    return sent


def supervise(conn: psycopg.Connection, now: datetime, deliver: Deliver | SiteQueues = post_webhook, *,
              wait: bool = True) -> dict[str, int] | None:
    """One supervisor pass (auto-clear, then notify and escalate), one process at a time; without ``wait``,
    None when another process is in its pass."""
    if wait:
        conn.execute("SELECT pg_advisory_lock(%s)", (SUPERVISOR_LOCK,))
    elif not conn.execute("SELECT pg_try_advisory_lock(%s)", (SUPERVISOR_LOCK,)).fetchone()[0]:
        return None
    try:
        cleared = auto_clear(conn, now)
        sent = notify_and_escalate(conn, now, deliver)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (SUPERVISOR_LOCK,))
    return {"cleared": cleared, "sent": sent}


class Supervisor:
    """Runs ``supervise`` every few seconds on a thread of its own, until closed."""

    def __init__(self, database_url: str, every_s: float = SUPERVISE_EVERY_S, deliver: Deliver = post_webhook
                 ) -> None:
        self._url = database_url
        self._every = every_s
        self._queues = site_queues(deliver)  # kept across passes: a site's webhook still answering is known
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alarm-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._queues.close()

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.wait(self._every):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._url, autocommit=True, application_name="sitepulse-alarms")
                supervise(conn, datetime.now().astimezone(), self._queues, wait=False)
            except psycopg.Error as exc:  # the database is away: try again next round
                log.warning("alarm supervisor: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
