"""Scheduled reports end to end: telemetry -> the real services -> the schedule fires at the shift's end -> a real
SMTP server on loopback (aiosmtpd, STARTTLS and a login) receives the PDF; retries, the delivery log, webhooks,
the tracking link and DST-safe periods."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from time import monotonic, sleep
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pypdfium2 as pdfium
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from fastapi.testclient import TestClient

from registry.api.app import create_app
from registry.shift_reports.periods import daily_periods, ended_between, shift_periods
from registry.shift_reports.scheduler import LINK_PATH, ReportScheduler
from registry.shift_reports.schedules import ScheduleIn, create_schedule, delete_schedule
from sitepulse.embedded.ports import free_port
from sitepulse.settings import load_settings
from sitepulse.sitefile import Shift, SiteConfig
from sitepulse.sites import save_site
from tests.registry.shift_report_fixtures import SITE, ProcessedSite, builtin_services, shared_site  # noqa: F401

pytestmark = pytest.mark.slow  # real processes or a browser: the parallel long step (make test)

ADMIN_TOKEN = "shift-report-delivery-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TZ = "Europe/Stockholm"
USER, PASSWORD = "sitepulse", "s3cret-smtp-password"


# --- periods: the site's wall clock, DST-safe -------------------------------------------------------------------

STOCKHOLM = SiteConfig(timezone=TZ, shifts=[Shift(name="day", start=time(6), end=time(18)),
                                            Shift(name="night", start=time(18), end=time(6))])


def test_shifts_keep_their_local_hours_across_the_dst_changes() -> None:
    spring = {p.label: (p.start, p.end) for p in shift_periods(STOCKHOLM, date(2026, 3, 28), date(2026, 3, 29))}
    utc = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
    assert spring["day shift of 2026-03-28"] == (utc(2026, 3, 28, 5), utc(2026, 3, 28, 17))  # CET
    assert spring["night shift of 2026-03-28"] == (utc(2026, 3, 28, 17), utc(2026, 3, 29, 4))  # 11 h: clocks jump
    assert spring["day shift of 2026-03-29"] == (utc(2026, 3, 29, 4), utc(2026, 3, 29, 16))  # CEST
    autumn = {p.label: p for p in shift_periods(STOCKHOLM, date(2026, 10, 24), date(2026, 10, 24))}
    night = autumn["night shift of 2026-10-24"]
    assert night.end - night.start == timedelta(hours=13)  # the clocks go back: one hour more
    days = daily_periods(STOCKHOLM, time(18), date(2026, 3, 29), date(2026, 3, 30))
    assert [d.end - d.start for d in days] == [timedelta(hours=23), timedelta(hours=24)]
    assert days[0].end.astimezone(ZoneInfo(TZ)).time() == time(18)


def test_consecutive_rounds_send_each_period_once() -> None:
    marks = [datetime(2026, 3, 27, 12, tzinfo=UTC) + timedelta(hours=7 * i) for i in range(12)]
    in_rounds = [p for a, b in zip(marks, marks[1:], strict=False) for p in ended_between(STOCKHOLM, "shift_end",
                                                                                           None, a, b)]
    at_once = ended_between(STOCKHOLM, "shift_end", None, marks[0], marks[-1])
    assert in_rounds == at_once and len(at_once) == 7  # 77 hours: seven shift ends
    assert len({p.end for p in at_once}) == len(at_once)


# --- a real SMTP server with STARTTLS and a login ----------------------------------------------------------------


@dataclass
class Mailbox:
    """What the SMTP server accepted; ``refuse_first`` answers that many DATA commands with a 451 first."""

    messages: list[EmailMessage] = field(default_factory=list)
    refuse_first: int = 0
    logins: list[str] = field(default_factory=list)
    tls_seen: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.tls_seen.append(session.ssl is not None)
        if self.refuse_first > 0:
            self.refuse_first -= 1
            return "451 4.3.0 try again later"
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == USER and data.password.decode() == PASSWORD
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl for this module."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def smtp(certificate: tuple[Path, Path]) -> Iterator[tuple[Mailbox, int]]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=mailbox.authenticate, auth_required=True, auth_require_tls=True)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def mail_settings(port: int, cert: Path, **more: Any) -> Any:
    return load_settings(admin_token=ADMIN_TOKEN, smtp_host="127.0.0.1", smtp_port=port, smtp_tls="starttls",
                         smtp_username=USER, smtp_password=PASSWORD, smtp_ca_file=str(cert),
                         smtp_from="reports@sitepulse.example", reports_link_base="http://testserver",
                         reports_retry_wait_s=0.01, webhook_approved_hosts="127.0.0.1", **more)


# --- the site: the shared processed site, whose one shift ends just after its data --------------------------------


@pytest.fixture(scope="module")
def database_url(shared_site: ProcessedSite) -> str:  # noqa: F811 (the shared site's database for this module)
    return shared_site.database_url


@pytest.fixture(scope="module")
def shift_site(shared_site: ProcessedSite) -> ProcessedSite:  # noqa: F811
    return shared_site


@pytest.fixture(scope="module")
def api(database_url: str, mqtt_broker: Any, shift_site: ProcessedSite) -> Iterator[TestClient]:
    app = create_app(database_url, mqtt_broker.url, services=builtin_services(),
                     settings=load_settings(admin_token=ADMIN_TOKEN, webhook_approved_hosts="127.0.0.1",
                                            reports_poll_s=3600))  # the thread stays idle: the test drives the clock
    with TestClient(app) as client:
        yield client


def _schedule(api: TestClient, site: ProcessedSite, **body: Any) -> dict[str, Any]:
    """A schedule added through the API, dated five minutes before the site's shift ended (the simulated data lies
    in the past: the scheduler sends only periods that end after a schedule was made)."""
    response = api.post(f"/api/v1/sites/{SITE}/report-schedules", headers=ADMIN,
                        json={"name": "Shift report", "trigger": "shift_end", **body})
    assert response.status_code == 201, response.text
    with psycopg.connect(site.database_url, autocommit=True) as conn:
        conn.execute("UPDATE report_schedules SET created_at = %s WHERE id = %s",
                     (site.shift_end - timedelta(minutes=5), response.json()["id"]))
    return response.json()


def _remove(api: TestClient, schedule: dict[str, Any]) -> None:
    assert api.delete(f"/api/v1/sites/{SITE}/report-schedules/{schedule['id']}", headers=ADMIN).status_code == 204


def test_the_shift_report_arrives_by_email_with_its_pdf_at_the_shift_end(
        api: TestClient, database_url: str, shift_site: ProcessedSite, smtp: tuple[Mailbox, int],
        certificate: tuple[Path, Path]) -> None:
    mailbox, port = smtp
    schedule = _schedule(api, shift_site, emails=["manager@quarry.example"], formats=["pdf", "xlsx"])
    scheduler = ReportScheduler(database_url, builtin_services(), mail_settings(port, certificate[0]))
    try:
        assert scheduler.run_due(now=shift_site.shift_end - timedelta(seconds=1)) == []  # not yet
        assert mailbox.messages == []
        sent = scheduler.run_due(now=shift_site.shift_end + timedelta(seconds=30))  # half a minute after its end
        assert len(sent) == 1
        assert scheduler.run_due(now=shift_site.shift_end + timedelta(seconds=45)) == []  # sent once
    finally:
        _remove(api, schedule)
    [message] = mailbox.messages
    assert mailbox.tls_seen == [True] and mailbox.logins == [USER]
    assert message["To"] == "manager@quarry.example" and message["Subject"].startswith("North Quarry: report for")
    assert "early shift of" in message["Subject"]
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    pdf_name = next(n for n in attachments if n.endswith(".pdf"))
    assert attachments[pdf_name].get_content_type() == "application/pdf"
    assert any(n.endswith(".xlsx") for n in attachments)
    document = pdfium.PdfDocument(attachments[pdf_name].get_content())
    text = " ".join(document[i].get_textpage().get_text_range() for i in range(len(document))).replace("\r\n", " ")
    assert "North Quarry" in text and "early shift of" in text and "Production (weight loading)" in text
    body = message.get_body(("plain",)).get_content()
    assert int(re.search(r"Production \(weight loading\): Tonnes [\d,.]+ t, Loads (\d+)", body).group(1)) > 0
    link = next(word for word in body.split() if LINK_PATH in word)
    with psycopg.connect(database_url) as conn:
        status, attempts, opens = conn.execute("SELECT status, attempts, opens FROM report_deliveries WHERE id = %s",
                                               (sent[0],)).fetchone()
        delivered = conn.execute("SELECT count(*) FROM usage_events WHERE action = 'report_delivered' AND principal ="
                                 " 'email:manager@quarry.example'").fetchone()[0]
    assert (status, attempts, opens) == ("delivered", 1, 0) and delivered == 4
    opened = api.get(link.removeprefix("http://testserver"))
    assert opened.status_code == 200 and opened.content.startswith(b"%PDF")
    from registry.api.state import state_of

    assert state_of(api.app).usage.flush()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT opens FROM report_deliveries WHERE id = %s", (sent[0],)).fetchone()[0] == 1
        readers = conn.execute("SELECT count(*) FROM usage_events WHERE action = 'report_opened' AND principal ="
                               " 'link:manager@quarry.example'").fetchone()[0]
    assert readers == 4
    assert api.get(LINK_PATH + "x" * 32).status_code == 404


def test_the_running_scheduler_sends_a_shift_that_just_ended_within_seconds(
        api: TestClient, database_url: str, smtp: tuple[Mailbox, int], certificate: tuple[Path, Path]) -> None:
    """The thread on the real clock: a shift of site 'yard' ended at the last whole minute; the report is in the
    mailbox a poll later (the demo's promise: within a minute of the shift's end)."""
    mailbox, port = smtp
    tz = ZoneInfo(TZ)
    ended = datetime.now(tz).replace(second=0, microsecond=0)
    shift = Shift(name="late", start=(ended - timedelta(hours=8)).time(), end=ended.time())
    with psycopg.connect(database_url, autocommit=True) as conn:
        save_site(conn, "yard", SiteConfig(name="Yard", timezone=TZ, shifts=[shift]))
        schedule = create_schedule(conn, "yard", ScheduleIn(name="Yard shift", trigger="shift_end",
                                                            emails=["yard@quarry.example"]), "test")
        conn.execute("UPDATE report_schedules SET created_at = %s WHERE id = %s",
                     (ended - timedelta(minutes=5), schedule.id))  # made before the shift ended
    scheduler = ReportScheduler(database_url, builtin_services(),
                                mail_settings(port, certificate[0], reports_poll_s=0.5))
    scheduler.start()
    try:
        deadline = monotonic() + 45
        while not mailbox.messages and monotonic() < deadline:
            sleep(0.2)
    finally:
        scheduler.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            delete_schedule(conn, "yard", schedule.id)
    assert [m["To"] for m in mailbox.messages] == ["yard@quarry.example"]
    assert datetime.now(UTC) - ended < timedelta(minutes=1)
    assert f"late shift of {(ended - timedelta(hours=8)).date().isoformat()}" in mailbox.messages[0]["Subject"]


def test_a_temporary_refusal_is_tried_again_and_a_dead_server_is_logged_and_shown(
        api: TestClient, database_url: str, shift_site: ProcessedSite, smtp: tuple[Mailbox, int],
        certificate: tuple[Path, Path]) -> None:
    mailbox, port = smtp
    mailbox.refuse_first = 1
    schedule = _schedule(api, shift_site, emails=["office@quarry.example"], formats=["csv"])
    try:
        sent = ReportScheduler(database_url, builtin_services(), mail_settings(port, certificate[0])).run_due(
            now=shift_site.shift_end + timedelta(seconds=30))
    finally:
        _remove(api, schedule)
    assert len(mailbox.messages) == 1
    deliveries = api.get(f"/api/v1/sites/{SITE}/report-deliveries", headers=ADMIN).json()["items"]
    assert {"id": sent[0], "status": "delivered", "attempts": 2}.items() <= deliveries[0].items()

    schedule = _schedule(api, shift_site, emails=["office@quarry.example"])
    try:
        dead = mail_settings(free_port(), certificate[0])  # nothing listens there
        failed = ReportScheduler(database_url, builtin_services(), dead).run_due(
            now=shift_site.shift_end + timedelta(seconds=30))
    finally:
        _remove(api, schedule)
    shown = api.get(f"/api/v1/sites/{SITE}/report-deliveries", params={"status": "failed"}, headers=ADMIN).json()
    assert shown["items"][0]["id"] == failed[0] and len(failed) == 1
    assert {d["status"] for d in shown["items"]} == {"failed"}
    assert shown["items"][0]["attempts"] == 3 and "Connection refused" in shown["items"][0]["error"]


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_webhook_gets_the_figures_and_the_link_and_a_private_one_is_refused(
        api: TestClient, database_url: str, shift_site: ProcessedSite) -> None:
    refused = api.post(f"/api/v1/sites/{SITE}/report-schedules", headers=ADMIN,
                       json={"name": "x", "trigger": "shift_end", "webhook_url": "http://10.1.2.3/hook"})
    assert refused.status_code == 422 and "10.1.2.3" in refused.json()["detail"]
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    schedule = _schedule(api, shift_site, webhook_url=f"http://127.0.0.1:{server.server_port}/reports")
    try:
        settings = load_settings(webhook_approved_hosts="127.0.0.1", reports_link_base="https://sp.example")
        sent = ReportScheduler(database_url, builtin_services(), settings).run_due(
            now=shift_site.shift_end + timedelta(seconds=30))
    finally:
        _remove(api, schedule)
        server.shutdown()
    assert len(sent) == 1
    [body] = _Hook.received
    assert body["kind"] == "sitepulse.report" and body["link"].startswith("https://sp.example" + LINK_PATH)
    production = next(s for s in body["sections"] if s["service"] == "weight-loading")
    assert production["figures"][1]["label"] == "Loads" and production["figures"][1]["value"] > 0


def test_schedules_are_for_admins_and_bad_ones_get_one_clear_message(api: TestClient, database_url: str,
                                                                     shift_site: ProcessedSite) -> None:
    from registry.tokens import create_token

    with psycopg.connect(database_url, autocommit=True) as conn:
        token = create_token(conn, "quarry manager", [SITE]).token
    manager = {"Authorization": f"Bearer {token}"}
    body = {"name": "Daily", "trigger": "daily", "daily_at": "18:00", "emails": ["a@quarry.example"]}
    assert api.post(f"/api/v1/sites/{SITE}/report-schedules", headers=manager, json=body).status_code == 403
    assert api.get(f"/api/v1/sites/{SITE}/report-deliveries", headers=manager).status_code == 200
    for bad, words in (({**body, "daily_at": None}, "daily_at"), ({**body, "emails": ["not an address"]},
                                                                 "not an e-mail address"),
                       ({**body, "emails": []}, "at least one e-mail address or a webhook"),
                       ({**body, "formats": ["docx"]}, "unknown format")):
        response = api.post(f"/api/v1/sites/{SITE}/report-schedules", headers=ADMIN, json=bad)
        assert response.status_code == 422 and words in response.json()["detail"], response.text
    made = _schedule(api, shift_site, **{k: v for k, v in body.items() if k != "name"})
    assert made["daily_at"] == "18:00" and made["trigger"] == "daily"
    listed = api.get(f"/api/v1/sites/{SITE}/report-schedules", headers=ADMIN).json()["items"]
    assert [s["id"] for s in listed] == [made["id"]]
    _remove(api, made)
