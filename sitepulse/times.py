"""Times typed by people (CLI options): a date means UTC midnight, a time must carry its zone."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sitepulse.errors import SitePulseError


def parse_user_time(value: str, label: str) -> datetime:
    """``2026-01-31`` (UTC midnight) or an RFC 3339 time with a zone; anything else is one clear error."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SitePulseError(f"{label}: {value!r} is not a date (2026-01-31) or an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise SitePulseError(f"{label}: give a time zone, e.g. {value}Z")
    return parsed
