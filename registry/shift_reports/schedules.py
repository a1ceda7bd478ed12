"""Report schedules of a site and the log of their deliveries (tables of registry/migrations/0008_shift_reports.sql).

A schedule sends the report of each period that ends (every shift's end, or daily at a local time) to its e-mail
addresses and/or its webhook. ``delivered_until`` is the end of the last period it sent or tried, so a restart
neither repeats nor skips one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, time
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from registry.shift_reports.formats import FORMATS
from sitepulse.errors import NotFound

EMAIL = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$|^[^@\s<>\"',;]+@localhost$")
MAX_RECIPIENTS = 50
_COLUMNS = ("id, site_id, name, trigger, daily_at, formats, emails, webhook_url, enabled, created_by, created_at,"
            " delivered_until")
_DELIVERY_COLUMNS = ("id, schedule_id, site_id, period_start, period_end, label, channel, target, status, attempts,"
                     " error, at, opens, first_opened_at")


class ScheduleIn(BaseModel):
    """A schedule as an admin writes it (API body, dashboard form)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    trigger: Literal["shift_end", "daily"]
    daily_at: time | None = Field(None, description="local time (site time zone) of a daily report, e.g. 18:00")
    formats: list[str] = Field(default_factory=lambda: ["pdf"], min_length=1, max_length=3)
    emails: list[str] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    webhook_url: str | None = Field(None, max_length=2000)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("daily_at")
    @classmethod
    def _local_time(cls, value: time | None) -> time | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("is a local time of the site (its time zone is the site file's): give it without offset")
        return value

    @field_validator("formats")
    @classmethod
    def _formats(cls, values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in FORMATS]
        if unknown:
            raise ValueError(f"unknown format {unknown[0]!r}; formats: {', '.join(FORMATS)}")
        return list(dict.fromkeys(values))

    @field_validator("emails")
    @classmethod
    def _emails(cls, values: list[str]) -> list[str]:
        cleaned = [v.strip() for v in values if v.strip()]
        bad = [v for v in cleaned if len(v) > 254 or not EMAIL.match(v)]
        if bad:
            raise ValueError(f"{bad[0][:80]!r} is not an e-mail address")
        return list(dict.fromkeys(cleaned))

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _complete(self) -> ScheduleIn:
        if self.trigger == "daily" and self.daily_at is None:
            raise ValueError("a daily schedule needs daily_at, the local time to send it (e.g. 18:00)")
        if not self.emails and not self.webhook_url:
            raise ValueError("a schedule needs at least one e-mail address or a webhook")
        return self


@dataclass(frozen=True)
class Schedule:
    id: int
    site_id: str
    name: str
    trigger: str
    daily_at: time | None
    formats: list[str]
    emails: list[str]
    webhook_url: str | None
    enabled: bool
    created_by: str
    created_at: datetime
    delivered_until: datetime | None

    def public(self) -> dict[str, Any]:
        """As the API shows it."""
        out = asdict(self)
        out["daily_at"] = self.daily_at.strftime("%H:%M") if self.daily_at else None
        return out


def create_schedule(conn: psycopg.Connection, site_id: str, body: ScheduleIn, actor: str) -> Schedule:
    row = conn.execute(
        f"INSERT INTO report_schedules (site_id, name, trigger, daily_at, formats, emails, webhook_url, enabled,"
        f" created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (site_id, body.name, body.trigger, body.daily_at, body.formats, body.emails, body.webhook_url, body.enabled,
         actor)).fetchone()
    return Schedule(*row)


def update_schedule(conn: psycopg.Connection, site_id: str, schedule_id: int, body: ScheduleIn) -> Schedule:
    row = conn.execute(
        f"UPDATE report_schedules SET name = %s, trigger = %s, daily_at = %s, formats = %s, emails = %s,"
        f" webhook_url = %s, enabled = %s WHERE site_id = %s AND id = %s RETURNING {_COLUMNS}",
        (body.name, body.trigger, body.daily_at, body.formats, body.emails, body.webhook_url, body.enabled, site_id,
         schedule_id)).fetchone()
    if row is None:
        raise NotFound(f"report schedule {schedule_id} not found on site {site_id!r}")
    return Schedule(*row)


def delete_schedule(conn: psycopg.Connection, site_id: str, schedule_id: int) -> None:
    if conn.execute("DELETE FROM report_schedules WHERE site_id = %s AND id = %s",
                    (site_id, schedule_id)).rowcount == 0:
        raise NotFound(f"report schedule {schedule_id} not found on site {site_id!r}")


def site_schedules(conn: psycopg.Connection, site_id: str) -> list[Schedule]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM report_schedules WHERE site_id = %s ORDER BY id", (site_id,))
    return [Schedule(*row) for row in rows]


def enabled_schedules(conn: psycopg.Connection) -> list[Schedule]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM report_schedules WHERE enabled ORDER BY site_id, id")
    return [Schedule(*row) for row in rows]


def mark_delivered_until(conn: psycopg.Connection, schedule_id: int, until: datetime) -> None:
    conn.execute("UPDATE report_schedules SET delivered_until = greatest(coalesce(delivered_until, %s), %s)"
                 " WHERE id = %s", (until, until, schedule_id))


@dataclass(frozen=True)
class DeliveryRecord:
    """One report sent (or not) to one recipient."""

    schedule_id: int | None
    site_id: str
    period_start: datetime
    period_end: datetime
    label: str
    channel: str
    target: str
    status: str
    attempts: int
    error: str | None
    link_token: str | None
    services: list[str]


def log_delivery(conn: psycopg.Connection, record: DeliveryRecord) -> int:
    return conn.execute(
        "INSERT INTO report_deliveries (schedule_id, site_id, period_start, period_end, label, channel, target,"
        " status, attempts, error, link_token, services) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (record.schedule_id, record.site_id, record.period_start, record.period_end, record.label, record.channel,
         record.target, record.status, record.attempts, record.error, record.link_token, record.services),
    ).fetchone()[0]


def site_deliveries(conn: psycopg.Connection, site_id: str, limit: int = 50,
                    status: str | None = None) -> list[dict[str, Any]]:
    """The latest deliveries of a site, newest first (only ``status`` ones when given)."""
    rows = conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM report_deliveries WHERE site_id = %s AND (%s::text IS NULL OR status = %s)"
        " ORDER BY at DESC, id DESC LIMIT %s", (site_id, status, status, limit))
    names = [c.strip() for c in _DELIVERY_COLUMNS.split(",")]
    return [dict(zip(names, row, strict=True)) for row in rows]


def open_link(conn: psycopg.Connection, token: str) -> dict[str, Any] | None:
    """The delivery a report link belongs to, its opens counted; None for a token no delivery has."""
    row = conn.execute(
        "UPDATE report_deliveries SET opens = opens + 1, first_opened_at = coalesce(first_opened_at, now())"
        " WHERE link_token = %s RETURNING id, site_id, period_start, period_end, label, target, services",
        (token,)).fetchone()
    if row is None:
        return None
    return dict(zip(("id", "site_id", "period_start", "period_end", "label", "target", "services"), row, strict=True))
