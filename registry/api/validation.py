"""Input checks that belong to the HTTP API as a whole: one clear 422 each, never a 500 further in.

Times in queries (``from``, ``to``, ``as_of``) lie between 1970 and 2200: a route computing a window
(``to - 1 day``) or a bucket from year 1 or 9999 overflowed Python's datetime (500). A site file's own limits
(time zone, text lengths, nesting, corners) are ``sitepulse/sitefile.py``'s, so the CLI has them too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from sitepulse.errors import InvalidInput

TIME_PARAMS = ("from", "to", "as_of")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
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
