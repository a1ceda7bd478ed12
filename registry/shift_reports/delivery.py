"""Sending a report: e-mail over SMTP (STARTTLS or implicit TLS, credentials from settings) and webhooks through
the registry's SSRF-safe sender, each tried up to three times with a doubling wait (tenacity).

A temporary failure (connection refused or dropped, a 4xx SMTP answer, a webhook timeout or 5xx) is tried again; a
permanent one (a 5xx SMTP answer: unknown recipient, refused credentials) is not.
"""

from __future__ import annotations

import hashlib
import secrets
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from registry.shift_reports.compose import Report
from registry.shift_reports.formats import FORMATS, file_name
from registry.webhooks import WebhookPolicy, WebhookSender, approved_hosts
from sitepulse.settings import Settings

ATTEMPTS = 3
SMTP_TIMEOUT_S = 20.0


class DeliveryFailed(Exception):
    """A delivery that did not go through; ``temporary`` ones are tried again."""

    def __init__(self, message: str, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


def new_link_token() -> tuple[str, str]:
    """A report link's secret for the message and its hash for the delivery log (the log never holds the link)."""
    token = secrets.token_urlsafe(24)
    return token, link_hash(token)


def link_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _temporary(exc: BaseException) -> bool:
    if isinstance(exc, DeliveryFailed):
        return exc.temporary
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    return isinstance(exc, OSError | smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError)


def with_retries(action: Callable[[], None], first_wait_s: float) -> tuple[int, str | None]:
    """Run ``action`` until it succeeds, up to ATTEMPTS times; (attempts made, the last error or None)."""
    attempts = 0
    retrying = Retrying(stop=stop_after_attempt(ATTEMPTS), retry=retry_if_exception(_temporary),
                        wait=wait_exponential(multiplier=first_wait_s, max=60), reraise=True)
    try:
        for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                action()
    except (OSError, smtplib.SMTPException, DeliveryFailed, RetryError) as exc:
        return attempts, f"{type(exc).__name__}: {exc}"[:300]
    return attempts, None


def summary_lines(report: Report) -> list[str]:
    """The report's headline figures, one line per section, for the message body."""
    lines = []
    for section in report.sections:
        figures = ", ".join(f"{f.label} {f.text()}" for f in section.figures)
        lines.append(f"- {section.title}" + (f": {figures}" if figures else ""))
    return lines


def email_message(report: Report, files: dict[str, bytes], sender: str, to: str, link: str) -> EmailMessage:
    """The e-mail: the headline figures, the report's link (opens are counted) and the files attached."""
    message = EmailMessage()
    message["Subject"] = f"{report.site_name}: report for {report.label}"
    message["From"] = sender
    message["To"] = to
    body = [f"SitePulse report for {report.site_name}", f"{report.label}: {report.period_text}", "",
            *summary_lines(report), "", f"Open the report: {link}", "",
            "You receive this because a site administrator added you to this report's schedule."]
    message.set_content("\n".join(body))
    for fmt, data in files.items():
        main, sub = FORMATS[fmt].split(";")[0].split("/")
        message.add_attachment(data, maintype=main, subtype=sub, filename=file_name(report, fmt))
    return message


def smtp_sender(settings: Settings) -> Callable[[EmailMessage], None]:
    """A function sending a message with the settings' SMTP server, TLS mode and credentials."""

    def send(message: EmailMessage) -> None:
        if not settings.smtp_host:
            raise DeliveryFailed("no SMTP server configured (SITEPULSE_SMTP_HOST)", temporary=False)
        context = ssl.create_default_context(cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)
        if settings.smtp_tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_S,
                                                  context=context)
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_S)
        with smtp:
            if settings.smtp_tls == "starttls":
                smtp.starttls(context=context)
            if settings.smtp_username:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_username, password)
            smtp.send_message(message)

    return send


@dataclass(frozen=True)
class WebhookBody:
    """What a report webhook POSTs: the period, the headline figures and the link to the files."""

    report: Report
    link: str

    def body(self) -> dict[str, Any]:
        return {"kind": "sitepulse.report", "site_id": self.report.site_id, "site_name": self.report.site_name,
                "label": self.report.label, "from": self.report.start.isoformat(),
                "to": self.report.end.isoformat(), "timezone": self.report.timezone, "link": self.link,
                "sections": [{"service": s.service, "title": s.title,
                              "figures": [{"label": f.label, "value": f.value, "unit": f.unit} for f in s.figures]}
                             for s in self.report.sections]}


def webhook_sender(settings: Settings, policy: WebhookPolicy | None = None) -> Callable[[WebhookBody, str], None]:
    """A function POSTing a report's webhook where the SSRF policy allows (registry/webhooks.py)."""
    sender = WebhookSender(policy or WebhookPolicy(approved_hosts(settings.webhook_approved_hosts)))

    def send(body: WebhookBody, url: str) -> None:
        error = sender(body, url)
        if error is not None:
            raise DeliveryFailed(error, temporary=not error.startswith("not sent") and not error.startswith("HTTP 4"))

    return send
