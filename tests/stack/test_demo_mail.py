"""The demo's shift report by e-mail: the demo schedules it for its site manager and receives it in its own loopback
mailbox (a real SMTP server, aiosmtpd), the PDF attached, within the scheduler's round after the shift's end."""

from __future__ import annotations

import mailbox
from datetime import timedelta
from pathlib import Path

import psycopg

from microservices.discovery import discover_services
from registry.shift_reports.periods import ended_between
from registry.shift_reports.scheduler import ReportScheduler
from registry.shift_reports.schedules import site_schedules
from simulators.site import load_site
from sitepulse.settings import load_settings
from sitepulse.sites import save_site
from stack.cli import DEMO_SITE, schedule_shift_report
from stack.mailbox import DEMO_MANAGER, open_mailbox


def test_the_demo_mails_the_shift_report_to_its_own_mailbox(database_url: str, tmp_path: Path) -> None:
    site = load_site()
    with psycopg.connect(database_url, autocommit=True) as conn:
        save_site(conn, DEMO_SITE, site)
        schedule_shift_report(conn)
        schedule_shift_report(conn)  # the demo run again keeps its one schedule
        [schedule] = site_schedules(conn, DEMO_SITE)
    assert schedule.trigger == "shift_end" and schedule.emails == [DEMO_MANAGER] and "pdf" in schedule.formats
    box = open_mailbox(tmp_path / "mailbox")
    try:
        env = box.environment()
        settings = load_settings(smtp_host=env["SITEPULSE_SMTP_HOST"], smtp_port=int(env["SITEPULSE_SMTP_PORT"]),
                                 smtp_tls=env["SITEPULSE_SMTP_TLS"], smtp_from=env["SITEPULSE_SMTP_FROM"],
                                 reports_retry_wait_s=0.1)
        [shift] = ended_between(site, "shift_end", None, schedule.created_at,
                                schedule.created_at + timedelta(hours=12, minutes=1))[:1]
        scheduler = ReportScheduler(database_url, discover_services(None), settings)
        assert scheduler.run_due(shift.end - timedelta(seconds=1)) == []  # not before the shift's end
        assert len(scheduler.run_due(shift.end + timedelta(seconds=30))) == 1
    finally:
        box.close()
    [message] = list(mailbox.Maildir(tmp_path / "mailbox", create=False))
    assert message["To"] == DEMO_MANAGER and shift.label in message["Subject"]
    attached = [part.get_filename() for part in message.walk() if part.get_filename()]
    assert any(name.endswith(".pdf") for name in attached) and any(name.endswith(".xlsx") for name in attached)
