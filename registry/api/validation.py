"""Input checks that belong to the HTTP API as a whole: one clear 422 each, never a 500 further in.

* Times in queries (``from``, ``to``, ``as_of``) lie between 1970 and 2200: a route computing a window
  (``to - 1 day``) or a bucket from year 1 or 9999 overflowed Python's datetime (500).
* A site file's time zone is a known IANA zone (``Mars/Olympus`` answered 404 "site not found" on every
  report, ``../../../../etc/passwd`` 500), and none of its texts exceeds ``MAX_TEXT`` characters (a 1.1 MB
  site name was stored and sent to every viewer).

The same checks of the site file belong in ``sitepulse/sitefile.py`` (so the CLI gets them too); until then
the API applies them before storing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from sitepulse.errors import InvalidInput
from sitepulse.sitefile import SiteConfig

TIME_PARAMS = ("from", "to", "as_of")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_TEXT = 200
_DATETIME = TypeAdapter(datetime)


def times_in_range(request: Request) -> None:
    """An app-wide dependency: each time query parameter, when it parses, lies in [1970, 2200)."""
    for name in TIME_PARAMS:
        raw = request.query_params.get(name)
        if not raw:
            continue
        try:
            value = _DATETIME.validate_python(raw)
        except ValidationError:
            continue  # not a time at all: the route's own validation names it
        if value.tzinfo is None:
            continue  # the route asks for a time zone
        try:
            inside = EARLIEST <= value < LATEST
        except OverflowError:  # an offset that pushes year 1 or 9999 out of range
            inside = False
        if not inside:
            raise InvalidInput(f"query parameter {name!r} must lie between 1970-01-01 and 2200-01-01, not {raw[:40]}")


@lru_cache(maxsize=1)
def known_time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _texts(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _texts(item, f"{where}[{i}]")


def check_site_file(site: SiteConfig) -> None:
    """The site file's time zone and text lengths, as one 422 naming the first problem."""
    if site.timezone not in known_time_zones():
        raise InvalidInput(f"timezone {site.timezone[:64]!r} is not a known IANA time zone, e.g. Europe/Stockholm")
    for where, text in _texts(site.model_dump(mode="json", exclude={"timezone"}), ""):
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"{where} is {len(text)} characters long; at most {MAX_TEXT}")
