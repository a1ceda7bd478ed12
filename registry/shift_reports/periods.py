"""The periods a report covers: a site's shifts and its reporting days, in the site's time zone, DST-safe.

Local wall-clock times are turned into instants with zoneinfo day by day, never by adding 24 hours to an instant:
a day shift 06:00-18:00 stays 06:00-18:00 local across a DST change, and a daily report at 18:00 covers the 23 or
25 hours since 18:00 the day before on the days the clocks move.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sitepulse.sitefile import DEFAULT_SHIFTS, SiteConfig


@dataclass(frozen=True, order=True)
class Period:
    """[start, end) in UTC and how a person names it ('day shift of 2026-12-07')."""

    end: datetime
    start: datetime
    label: str


def local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time (a time skipped by DST resolves forward, as zoneinfo does)."""
    return datetime.combine(day, at, tz).astimezone(UTC)


def shift_periods(site: SiteConfig | None, first_day: date, last_day: date) -> list[Period]:
    """Every shift that started on a local day from ``first_day`` to ``last_day``, by end."""
    tz = ZoneInfo(site.timezone if site else "UTC")
    shifts = site.shifts if site is not None and site.shifts else DEFAULT_SHIFTS
    periods = []
    day = first_day
    while day <= last_day:
        for shift in shifts:
            wraps = (shift.end.hour, shift.end.minute) <= (shift.start.hour, shift.start.minute)
            periods.append(Period(local(day + timedelta(days=1) if wraps else day, shift.end, tz),
                                  local(day, shift.start, tz), f"{shift.name} shift of {day.isoformat()}"))
        day += timedelta(days=1)
    return sorted(periods)


def daily_periods(site: SiteConfig | None, at: time, first_day: date, last_day: date) -> list[Period]:
    """The reporting days ending at local ``at`` on each day from ``first_day`` to ``last_day``."""
    tz = ZoneInfo(site.timezone if site else "UTC")
    return [Period(local(day, at, tz), local(day - timedelta(days=1), at, tz),
                   f"day to {day.isoformat()} {at:%H:%M}")
            for day in (first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1))]


def ended_between(site: SiteConfig | None, trigger: str, daily_at: time | None, after: datetime,
                  now: datetime) -> list[Period]:
    """The periods of a schedule that ended in (after, now], oldest first."""
    tz = ZoneInfo(site.timezone if site else "UTC")
    first, last = (after.astimezone(tz).date() - timedelta(days=1)), now.astimezone(tz).date()
    if trigger == "daily":
        if daily_at is None:
            raise ValueError("a daily schedule needs its local time")
        candidates = daily_periods(site, daily_at, first, last)
    else:
        candidates = shift_periods(site, first, last)
    return [p for p in candidates if after < p.end <= now]


def latest_shift(site: SiteConfig | None, now: datetime) -> Period | None:
    """The last shift that ended at or before ``now`` (within the past two days)."""
    ended = ended_between(site, "shift_end", None, now - timedelta(days=2), now)
    return ended[-1] if ended else None
