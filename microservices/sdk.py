"""The SitePulse micro-service SDK: everything a service author needs, in one file, top to bottom.

A service is one class. It *declares* what it is (name, version, summary), what it reads
(telemetry fields, other services), what it writes (tables in its own schema, created by
its own migrations), how it is configured (a pydantic settings model with defaults, named as
the class's type parameter: ``Service[IdleSettings]``; ``Service`` alone has no settings) and
which value KPIs the registry should evaluate. Its only required behaviour is ``process``:

    class IdleTime(Service[IdleSettings]):
        name = "idle-time"
        version = "0.1.0"
        summary = "Minutes each machine idles with the engine on"
        consumes = ("speed_kmh", "engine_on")
        tables = ("idle_time.idle_minutes",)
        migrations = Path(__file__).parent / "migrations"

        def process(self, batch, state, settings: IdleSettings):
            out = Outputs()
            idle = batch.telemetry.query(f"engine_on and speed_kmh < {settings.idle_below_kmh}")
            out.write("idle_minutes", idle.groupby("machine_id").size().div(60).reset_index(name="minutes"))
            return out, state

The runner (the host) does everything else: it validates a site's stored settings with that
model and hands ``process``, the card and the routes that instance (none substitutes defaults); it finds the
service through the entry-point group ``sitepulse.microservices``, applies its migrations,
feeds it batches of new telemetry per site in per-machine time order, commits its outputs
together with its new state and checkpoint in one transaction, retries it with backoff when
it raises, and replays from an earlier snapshot when samples arrive late, so results do not
depend on arrival order. Its routes are mounted under ``/api/v1/sites/{site_id}/{name}/``.

Rules ``process`` must keep so that replays converge:
- be deterministic: the same state and rows give the same outputs and new state;
- be incremental: processing rows A then B gives the outputs of processing A+B at once;
- keep ``state`` JSON-serialisable (dicts, lists, str, numbers, bool, None);
- if results combine machines (encounters, queues), say how far they are final with
  ``outputs.finalise(t)``: a sample at or before ``t`` from any machine then causes a replay.
Output tables are append-only; each has ``site_id text`` and ``run_seq bigint`` columns
that the runner fills (it deletes rows by ``run_seq`` when it replays).
"""

from __future__ import annotations

import base64
import hashlib
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, TypeVar, get_args, get_origin

import orjson
import pandas as pd
from fastapi import Depends, Query, Request
from pydantic import BaseModel, ConfigDict

from microservices.report_sections import Chart, Figure, ReportRequest, ReportSection, Table  # noqa: F401 (re-export)
from sitepulse.errors import SitePulseError
from sitepulse.sitefile import SiteConfig

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
TELEMETRY_FIELDS = frozenset(
    {
        "ts",
        "seq",
        "lat",
        "lon",
        "speed_kmh",
        "heading_deg",
        "payload_kg",
        "fuel_used_l",
        "engine_hours",
        "engine_on",
        "extra",
    }
)


class NoSettings(BaseModel):
    """Settings model for a service that has none."""

    model_config = ConfigDict(extra="forbid")


SettingsT = TypeVar("SettingsT", bound=BaseModel)
PreparedT = TypeVar("PreparedT")


class SiteCache(Generic[PreparedT]):
    """What a service prepares from a site file (zones, roads), built once per site file content and the settings
    it depends on, shared by every instance and step of the process; the oldest dropped past ``limit`` sites."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._built: dict[tuple, PreparedT] = {}
        # the content hash of each site object seen (serialising a site file costs ~0.1 ms: once per object, not
        # per step); a weak reference tells a live object from a new one that took a dead one's id
        self._digests: dict[int, tuple[weakref.ref, str]] = {}

    def get(self, site: SiteConfig | None, build: Callable[[], PreparedT], *depends_on: Any) -> PreparedT:
        """The object ``build()`` makes for this site file and ``depends_on`` (hashable), built the first time."""
        key = (None if site is None else self._digest(site), *depends_on)
        prepared = self._built.get(key)
        if prepared is None:
            if len(self._built) >= self.limit:
                self._built.pop(next(iter(self._built)))
            prepared = self._built[key] = build()
        return prepared

    def _digest(self, site: SiteConfig) -> str:
        """The site file's content hash, computed once per site object (site files are never changed in place)."""
        known = self._digests.get(id(site))
        if known is not None and known[0]() is site:
            return known[1]
        if len(self._digests) >= 4 * self.limit:
            self._digests = {k: v for k, v in self._digests.items() if v[0]() is not None}
        digest = hashlib.sha1(site.model_dump_json().encode()).hexdigest()
        self._digests[id(site)] = (weakref.ref(site), digest)
        return digest


@dataclass(frozen=True)
class Kpi:
    """A value KPI the registry evaluates before and after a service is enabled on a site.

    ``daily_sql`` returns rows ``(day date, value float)`` for ``%(site_id)s`` between
    ``%(start)s`` and ``%(end)s``; the evaluation compares the days before and after.
    """

    name: str
    description: str
    unit: str
    higher_is_better: bool
    daily_sql: str


@dataclass
class Alert:
    """Something a person should see now; published to ``sites/{site}/alerts/{service}``.

    ``key`` identifies the alert across replays: the same key is stored and sent once.
    """

    key: str
    message: str
    level: str = "warning"
    at: datetime | None = None
    machine_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Outputs:
    """What one call of ``process`` produced: rows per table, alerts, and how far results are final."""

    def __init__(self) -> None:
        self.tables: dict[str, list[pd.DataFrame]] = {}
        self.alerts: list[Alert] = []
        self.final_until: datetime | None = None

    def finalise(self, until: datetime) -> None:
        """Declare results up to ``until`` final for the whole site (services that combine machines).

        A sample at or before that time from ANY machine then makes the runner replay, so a
        machine whose data arrives late cannot be missing from what was already emitted.
        Per-machine services need not call this: lateness per machine is tracked for them.
        """
        self.final_until = until if self.final_until is None else max(self.final_until, until)

    def write(self, table: str, rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> None:
        """Append rows to one of the service's tables (name without the schema)."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        if not frame.empty:
            self.tables.setdefault(table, []).append(frame)

    def alert(self, key: str, message: str, **fields: Any) -> None:
        """Raise an alert (see Alert for the fields)."""
        self.alerts.append(Alert(key=key, message=message, **fields))

    def frames(self) -> dict[str, pd.DataFrame]:
        """One frame per table."""
        return {t: pd.concat(parts, ignore_index=True) for t, parts in self.tables.items()}


@dataclass
class Batch:
    """New telemetry of one site, sorted by machine_id then ts, and what the service may consult.

    ``telemetry`` has the telemetry table's columns (``ts`` tz-aware UTC). ``machines``
    is the machine registry of the site (machine_id, kind, model, rated_payload_kg).
    ``read`` runs a read-only query (e.g. on a dependency's tables) and returns a frame.
    ``replay`` is true while the runner re-processes after late samples.
    """

    site_id: str
    telemetry: pd.DataFrame
    site: SiteConfig | None
    machines: pd.DataFrame
    read: Callable[[str, Mapping[str, Any]], pd.DataFrame]
    replay: bool = False


@dataclass(frozen=True)
class Card:
    """A site-view card: a title, headline metrics and optional structured data for charts/maps."""

    title: str
    metrics: list[dict[str, Any]] = field(default_factory=list)  # {"label", "value", "unit"}
    data: dict[str, Any] = field(default_factory=dict)
    link: str | None = None


class Service(Generic[SettingsT]):
    """Base class of every micro-service: declare the class attributes, implement ``process``.

    ``class Positioning(Service[PositioningSettings])`` makes ``PositioningSettings`` its ``Settings``: the
    host validates a site's stored settings with it, and ``process``, ``card`` and the routes get that instance.
    """

    name: ClassVar[str]  # wire name: lower-case words joined by '-', e.g. "weight-loading"
    version: ClassVar[str] = "0.1.0"
    summary: ClassVar[str] = ""
    author: ClassVar[str] = "SitePulse"  # who built or contributed it (co-creation credit)
    depends_on: ClassVar[tuple[str, ...]] = ()  # services whose tables this one reads
    consumes: ClassVar[tuple[str, ...]] = ()  # telemetry fields read (shown to the customer)
    # True: ``ts`` as the devices sent it; else corrected where a device clock runs ahead of arrival
    # (microservices/clock.py; the device's own time then in ``device_ts``)
    device_time: ClassVar[bool] = False
    tables: ClassVar[tuple[str, ...]] = ()  # "schema.table" written (shown to the customer)
    migrations: ClassVar[Path | None] = None  # folder of NNNN_name.sql files for its schema
    Settings: ClassVar[type[BaseModel]] = NoSettings  # set from the type parameter: Service[MySettings]
    kpis: ClassVar[tuple[Kpi, ...]] = ()
    volume: ClassVar[Kpi | None] = None  # work handled, for usage reports a provider prices (e.g. tonnes)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``Settings`` from the class's type parameter (``Service[MySettings]``), unless it sets its own."""
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            model = get_args(base)[0] if get_origin(base) is Service and get_args(base) else None
            if isinstance(model, type) and issubclass(model, BaseModel) and "Settings" not in cls.__dict__:
                cls.Settings = model

    @property
    def schema(self) -> str:
        """The database schema the service owns: its name with '_' for '-'."""
        return self.name.replace("-", "_")

    def process(self, batch: Batch, state: dict[str, Any], settings: SettingsT) -> tuple[Outputs, dict]:
        """Turn new telemetry into rows and alerts; return them with the new state."""
        raise NotImplementedError

    def router(self) -> Any | None:
        """An optional fastapi.APIRouter, mounted at /api/v1/sites/{site_id}/{name}."""
        return None

    def card(
        self, site_id: str, read: Callable[[str, Mapping[str, Any]], pd.DataFrame], settings: SettingsT
    ) -> Card | None:
        """An optional card for the site view, computed from the service's tables."""
        return None

    def report(self, request: ReportRequest, settings: SettingsT) -> list[ReportSection]:
        """Optional sections of the site's shift and daily reports for ``request``'s period (report_sections.py)."""
        return []

    def describe(self) -> dict[str, Any]:
        """The declaration as plain data (catalogue, transparency page, ``services list``)."""
        return {
            "name": self.name,
            "version": self.version,
            "summary": self.summary,
            "author": self.author,
            "depends_on": list(self.depends_on),
            "consumes": list(self.consumes),
            "tables": list(self.tables),
            "settings": self.Settings.model_json_schema(),
            "kpis": [
                {
                    "name": k.name,
                    "description": k.description,
                    "unit": k.unit,
                    "higher_is_better": k.higher_is_better,
                }
                for k in self.kpis
            ],
            "volume": {"name": self.volume.name, "unit": self.volume.unit} if self.volume else None,
        }


def validate_declaration(service: Service) -> None:
    """Refuse a malformed service at load time with one line naming the problem."""
    label = f"micro-service {getattr(service, 'name', type(service).__name__)!r}"
    if not NAME_PATTERN.match(getattr(service, "name", "")):
        raise SitePulseError(f"{label}: name must be lower-case words joined by '-'")
    unknown = set(service.consumes) - TELEMETRY_FIELDS
    if unknown:
        raise SitePulseError(f"{label}: consumes unknown telemetry fields {sorted(unknown)}")
    for table in service.tables:
        if not table.startswith(service.schema + "."):
            raise SitePulseError(f"{label}: table {table!r} must be in its own schema {service.schema!r}")
    if service.migrations is not None and not Path(service.migrations).is_dir():
        raise SitePulseError(f"{label}: migrations folder {service.migrations} does not exist")
    if type(service).process is Service.process:
        raise SitePulseError(f"{label}: does not implement process()")
    named = settings_parameter(type(service))
    if named is not None and not issubclass(service.Settings, named):
        raise SitePulseError(f"{label}: Settings {service.Settings.__name__} is not its type parameter "
                             f"{named.__name__} (Service[{named.__name__}])")


def settings_parameter(cls: type[Service]) -> type[BaseModel] | None:
    """The settings model a service class names as its type parameter (``Service[MySettings]``), if any."""
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            args = get_args(base) if get_origin(base) is Service else ()
            if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                return args[0]
    return None


# --- helpers for a service's routes -----------------------------------------------------------


@dataclass(frozen=True)
class ServiceRequest(Generic[SettingsT]):
    """What the host hands a service's route: the site, a DB connection, the site's settings, the caller.

    Use it as a route parameter: ``def cycles(ctx: ServiceRequestDep, ...)``, or, where the route reads
    settings, typed: ``Annotated[ServiceRequest[MySettings], Depends(service_request)]``. The host has
    already checked the caller may see the site and that the service is enabled there, and validated the
    site's settings with the service's model (a route never falls back to defaults).
    """

    site_id: str
    service: str
    conn: Any  # psycopg.Connection for this request; committed when the route returns
    settings: SettingsT
    caller: str

    def frame(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a read query and return its rows as a DataFrame."""
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description or []])

    def rows(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read query and return its rows as dicts (JSON-ready: numeric comes back as float)."""
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            names = [d.name for d in cur.description or []]
            return [{n: float(v) if isinstance(v, Decimal) else v for n, v in zip(names, row, strict=True)}
                    for row in cur.fetchall()]

    def zone_names(self) -> dict[str, str]:
        """Zone id -> the name the site manager drew (the id where the zone has none), from the site file."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT z->>'id', coalesce(nullif(z->>'name', ''), z->>'id') FROM sites,"
                        " jsonb_array_elements(coalesce(config->'zones', '[]'::jsonb)) z WHERE site_id = %s",
                        (self.site_id,))
            return dict(cur.fetchall())

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
