"""The report scheduler: every few seconds, each enabled schedule sends the periods that have ended since its last.

``run_due(now)`` is the whole decision and takes the clock as an argument, so tests and the demo drive it; the
thread only calls it every ``reports_poll_s``. One round runs at a time across every API process (a PostgreSQL
advisory lock), so two processes never send the same report twice. A period that ended more than a day before
the scheduler looked (the server was down) is not sent late: its report stays downloadable.

Each message sent is a usage event ``report_delivered`` for every service with a section in it; each open of its
link is a ``report_opened`` (registry/usage.py), so a service's evaluation counts the people reading its reports.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from microservices.sdk import Service
from registry.shift_reports.compose import Report, compose_report
from registry.shift_reports.delivery import (
    WebhookBody,
    email_message,
    new_link_token,
    smtp_sender,
    webhook_sender,
    with_retries,
)
from registry.shift_reports.formats import render
from registry.shift_reports.periods import Period, ended_between
from registry.shift_reports.schedules import (
    DeliveryRecord,
    Schedule,
    enabled_schedules,
    log_delivery,
    mark_delivered_until,
)
from sitepulse.settings import Settings
from sitepulse.sites import load_site

log = logging.getLogger(__name__)
CATCH_UP = timedelta(days=1)
ROUND_LOCK = 0x5EB0_4E7  # pg advisory lock key of a scheduler round
LINK_PATH = "/api/v1/report-links/"


def record_usage(conn: psycopg.Connection, site_id: str, services: list[str], principal: str, action: str,
                 detail: dict[str, Any]) -> None:
    """One usage event per service (written at once: the scheduler is not on a request's path)."""
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO usage_events (at, site_id, service, principal, action, detail)"
                        " VALUES (now(), %s, %s, %s, %s, %s)",
                        [(site_id, service, principal, action, Jsonb(detail)) for service in services])


@dataclass
class ReportScheduler:
    """Sends due reports; ``send_email``/``send_webhook`` default to the settings' SMTP server and the SSRF-safe
    webhook sender."""

    database_url: str
    services: dict[str, Service]
    settings: Settings
    send_email: Callable[[EmailMessage], None] | None = None
    send_webhook: Callable[[WebhookBody, str], None] | None = None

    def __post_init__(self) -> None:
        self.send_email = self.send_email or smtp_sender(self.settings)
        self.send_webhook = self.send_webhook or webhook_sender(self.settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one round -----------------------------------------------------------------------------

    def run_due(self, now: datetime | None = None) -> list[int]:
        """Send every period that ended by ``now``; the ids of the deliveries logged."""
        now = now or datetime.now(UTC)
        logged: list[int] = []
        with psycopg.connect(self.database_url, autocommit=True, application_name="sitepulse-reports") as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (ROUND_LOCK,)).fetchone()[0]:
                return logged  # another process runs this round
            try:
                for schedule in enabled_schedules(conn):
                    logged.extend(self._run_schedule(conn, schedule, now))
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ROUND_LOCK,))
        return logged

    def _run_schedule(self, conn: psycopg.Connection, schedule: Schedule, now: datetime) -> list[int]:
        site = load_site(conn, schedule.site_id)
        if site is None:
            return []
        after = max(schedule.delivered_until or schedule.created_at, now - CATCH_UP)
        logged: list[int] = []
        for period in ended_between(site, schedule.trigger, schedule.daily_at, after, now):
            logged.extend(self.deliver(conn, schedule, period))
            mark_delivered_until(conn, schedule.id, period.end)
        return logged

    def deliver(self, conn: psycopg.Connection, schedule: Schedule, period: Period) -> list[int]:
        """The period's report to every recipient of the schedule, each delivery logged."""
        targets = [("email", address) for address in schedule.emails] + \
            ([("webhook", schedule.webhook_url)] if schedule.webhook_url else [])
        try:
            report = compose_report(conn, self.services, schedule.site_id, period.start, period.end, period.label)
            files = {fmt: render(report, fmt) for fmt in schedule.formats}
        except Exception as exc:  # a report that cannot be made is a failed delivery, shown as such
            log.exception("report of schedule %s for %s could not be made", schedule.id, period.label)
            error = f"report could not be made: {type(exc).__name__}: {exc}"[:300]
            return [log_delivery(conn, DeliveryRecord(schedule.id, schedule.site_id, period.start, period.end,
                                                      period.label, channel, target, "failed", 0, error, None, []))
                    for channel, target in targets]
        return [self._send(conn, schedule, report, files, channel, target) for channel, target in targets]

    def _send(self, conn: psycopg.Connection, schedule: Schedule, report: Report, files: dict[str, bytes],
              channel: str, target: str) -> int:
        token, token_hash = new_link_token()
        link = self.settings.reports_link_base.rstrip("/") + LINK_PATH + token
        if channel == "email":
            message = email_message(report, files, self.settings.smtp_from, target, link)
            attempts, error = with_retries(lambda: self.send_email(message), self.settings.reports_retry_wait_s)
        else:
            body = WebhookBody(report, link)
            attempts, error = with_retries(lambda: self.send_webhook(body, target),
                                           self.settings.reports_retry_wait_s)
        status = "failed" if error else "delivered"
        if error:
            log.warning("report %s for %s to %s failed after %d attempts: %s", schedule.name, report.label, target,
                        attempts, error)
        delivery = log_delivery(conn, DeliveryRecord(schedule.id, schedule.site_id, report.start, report.end,
                                                     report.label, channel, target, status, attempts, error,
                                                     token_hash, report.services))
        if not error:
            record_usage(conn, schedule.site_id, report.services, f"{channel}:{target}"[:200], "report_delivered",
                         {"schedule": schedule.id, "delivery": delivery, "label": report.label})
        return delivery

    # --- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="report-scheduler", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:  # the database away or a bug: logged, and the next round tries again
                log.exception("report scheduler round failed")
            self._stop.wait(self.settings.reports_poll_s)
