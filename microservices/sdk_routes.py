"""Helpers for a service's HTTP routes: import this module only where a service has routes (it imports FastAPI).

``microservices.sdk`` is the rest of the plugin surface and imports no web framework, so a pure ``process``, its
unit tests and the runner load without FastAPI and Starlette (~130 ms and two packages less). A route takes the
request's context with ``ctx: ServiceRequestDep``, pages with ``page: PageDep`` (``page.fetch``) and a time window
with ``window: TimeRangeDep``; a user's mistake raises ``SitePulseError``, which the API answers with a 400.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

import orjson
import pandas as pd
from fastapi import Depends, Query, Request
from pydantic import BaseModel

from ingest.fleet import births
from microservices.frames import frame_reader
from microservices.site_view import MachineView, SiteView
from sitepulse.errors import SitePulseError
from sitepulse.sites import load_site, zone_names

SettingsT = TypeVar("SettingsT", bound=BaseModel)  # the service's settings model, as in sdk.Service


@dataclass(frozen=True)
class ServiceRequest(Generic[SettingsT]):
    """What the host hands a service's route: the site, a DB connection, the site's settings, the caller, and
    which services are switched on at the site.

    Use it as a route parameter: ``def cycles(ctx: ServiceRequestDep, ...)``, or, where the route reads
    settings, typed: ``Annotated[ServiceRequest[MySettings], Depends(service_request)]``. The host has
    already checked the caller may see the site and that the service is enabled there, and validated the
    site's settings with the service's model (a route never falls back to defaults). ``enabled`` names every
    service switched on at the site (``"positioning" in ctx.enabled``); ``machines()`` and ``zone_names()`` read
    what other packages own through their functions, so a route's own SQL reads only its service's tables.
    """

    site_id: str
    service: str
    conn: Any  # psycopg.Connection for this request; committed when the route returns
    settings: SettingsT
    caller: str
    enabled: frozenset[str] = frozenset()  # the services switched on at the site, this one included

    def machines(self) -> Mapping[str, MachineView]:
        """Every machine of the site by id: the site file's, updated by the devices' birth messages (kind, model,
        rated payload; see ``SiteView.with_births``)."""
        return SiteView.of(load_site(self.conn, self.site_id)).with_births(births(self.conn, self.site_id))

    def frame(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a read query and return its rows as a DataFrame."""
        return frame_reader(self.conn)(query, params)

    def rows(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read query and return its rows as dicts (JSON-ready: numeric comes back as float)."""
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            names = [d.name for d in cur.description or []]
            return [{n: float(v) if isinstance(v, Decimal) else v for n, v in zip(names, row, strict=True)}
                    for row in cur.fetchall()]

    def zone_names(self) -> dict[str, str]:
        """Zone id -> the name the site manager drew (the id where the zone has none), from the site file."""
        return zone_names(self.conn, self.site_id)

    def named(self, rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
        """Rows with ``<column>_name`` beside each zone-id column, so answers use the drawn names."""
        if not rows:
            return rows
        names = self.zone_names()
        for row in rows:
            for column in columns:
                zone = row.get(column)
                row[f"{column}_name"] = names.get(zone, zone) if zone is not None else None
        return rows


def service_request(request: Request) -> ServiceRequest:
    """FastAPI dependency: the ServiceRequest the host stored for this request."""
    return request.state.sitepulse


ServiceRequestDep = Annotated[ServiceRequest, Depends(service_request)]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def encode_cursor(key: tuple[Any, ...]) -> str:
    """An opaque cursor for keyset pagination from the last row's sort key."""
    return base64.urlsafe_b64encode(orjson.dumps(key, default=str)).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """The sort key inside a cursor; a tampered cursor is a user error."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise SitePulseError("cursor is not one this API issued") from None
    if not isinstance(value, list):
        raise SitePulseError("cursor is not one this API issued")
    return value


BAD_CURSOR = "cursor is not one this API issued"


@dataclass(frozen=True)
class Page:
    """A requested page: how many items, and the sort key of the last item already seen."""

    limit: int
    after: list[Any] | None = None

    def key(self, *types: type) -> tuple[Any, ...] | None:
        """The cursor's key checked against the list's key types (datetime from RFC 3339), or None."""
        if self.after is None:
            return None
        if len(self.after) != len(types):
            raise SitePulseError(BAD_CURSOR)
        values = []
        for value, kind in zip(self.after, types, strict=True):
            if kind is datetime and isinstance(value, str):
                try:
                    value = datetime.fromisoformat(value)
                except ValueError:
                    raise SitePulseError(BAD_CURSOR) from None
            if not isinstance(value, kind) or isinstance(value, bool):
                raise SitePulseError(BAD_CURSOR)
            values.append(value)
        return tuple(values)

    def fetch(self, read: Callable[[tuple[Any, ...] | None, int], list[dict[str, Any]]],
              **order: type) -> dict[str, Any]:
        """One page of a list in keyset order, the contract's body: ``order`` names the sort key's columns
        and types (``created_at=datetime, id=int``); ``read(after, n)`` returns up to n rows past the
        cursor's key (``after`` None: from the start), in that order."""
        rows = read(self.key(*order.values()), self.limit + 1)
        items = rows[:self.limit]
        more = len(rows) > self.limit and len(items) > 0
        return {"items": items, "next_cursor": encode_cursor(tuple(items[-1][c] for c in order)) if more else None}

    def of_list(self, items: Iterable[dict[str, Any]], **order: type) -> dict[str, Any]:
        """The same page of a small in-memory list (catalogues), sorted ascending by ``order``."""
        columns = tuple(order)
        ordered = sorted(items, key=lambda item: tuple(item[c] for c in columns))

        def read(after: tuple[Any, ...] | None, n: int) -> list[dict[str, Any]]:
            return [i for i in ordered if after is None or tuple(i[c] for c in columns) > after][:n]

        return self.fetch(read, **order)


@dataclass(frozen=True)
class TimeRange:
    """The ``from``/``to`` query parameters of a list; either may be open."""

    start: datetime | None = None
    end: datetime | None = None


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page (1-1000)")] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=1024, description="next_cursor of the previous page")] = None,
) -> Page:
    """``limit`` (over the maximum is a 422 naming it) and ``cursor`` (a foreign one is a 400)."""
    return Page(limit, decode_cursor(cursor) if cursor else None)


def time_range(
    start: Annotated[datetime | None, Query(alias="from", description="RFC 3339, inclusive")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="RFC 3339, exclusive")] = None,
) -> TimeRange:
    """``from`` and ``to`` in UTC; a naive time, one outside 1970-2200 or a range that ends before it starts is a
    user error. The years are bounded here, not only by the API's app-wide check, because services call this
    directly: a window (``to - 1 day``) or bucket from year 1 or 9999 overflows datetime further in."""
    earliest, latest = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
    for value, name in ((start, "from"), (end, "to")):
        if value is None or value.tzinfo is None:
            continue  # as_utc names a naive time
        try:
            inside = earliest <= value < latest
        except OverflowError:  # an offset pushing year 1 or 9999 past datetime's range
            inside = False
        if not inside:
            raise SitePulseError(f"{name} must lie between 1970-01-01 and 2200-01-01, not {value.isoformat()}")
    start, end = as_utc(start, "from"), as_utc(end, "to")
    if start is not None and end is not None and end < start:
        raise SitePulseError("to is before from")
    return TimeRange(start, end)


def as_utc(value: datetime | None, name: str) -> datetime | None:
    """A query time in UTC: RFC 3339 allows offsets (+16:00) that PostgreSQL refuses, so none reach it."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise SitePulseError(f"{name} must carry a time zone, e.g. 2026-11-23T06:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise SitePulseError(f"{name} is out of range") from None


PageDep = Annotated[Page, Depends(page_params)]
TimeRangeDep = Annotated[TimeRange, Depends(time_range)]
