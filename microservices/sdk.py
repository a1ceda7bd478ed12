"""The SitePulse micro-service SDK: the one module a plugin imports from (route helpers: ``sdk_routes``).

Stable for plugins (kept working across releases): every name in ``__all__`` below. A pure ``process`` needs
only this module, which imports no web framework; a service with HTTP routes also imports
``microservices.sdk_routes`` (FastAPI dependencies, paging, time ranges).

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

What ``process`` gets and gives (each class below documents its shape): ``Batch`` (telemetry columns and dtypes,
``site_view``: zones, machines and shifts; ``floats``), ``Outputs`` (``write`` rows, ``alert`` and ``clear``
alerts, ``finalise``); per shift with ``shift_columns``/``shifts_at``; ``Card`` for the site view, drawn from the
``CardContext`` the host hands ``card`` (site, machines, reader, alert count); ``Kpi`` for the evaluation (``inputs``:
what the host adds from other packages); ``sample_config``/``load_sample`` for the service's ``sample.yaml``. An
alarm clears when the service says its condition ended (``Alert(ended_at=...)`` or ``Outputs.clear``): the registry
reads no service's tables.

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

import hashlib
import inspect
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, get_args, get_origin

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from ingest.fields import MEASURED_FIELDS, SAMPLE_FIELDS
from microservices.frames import Reader
from microservices.report_sections import Chart, Figure, ReportRequest, ReportSection, Table
from microservices.sample_config import load_sample, sample_config
from microservices.shifts import shift_columns, shifts_at
from microservices.site_view import MachineView, ShiftView, SiteView, ZoneView
from sitepulse.errors import SitePulseError

if TYPE_CHECKING:
    from sitepulse.sitefile import SiteConfig

__all__ = [
    "MEASURED_FIELDS", "NAME_PATTERN", "SAMPLE_FIELDS", "TELEMETRY_FIELDS",
    "Alert", "AlertEnd", "Batch", "Card", "CardContext", "Chart", "Figure", "Kpi", "MachineView", "NoSettings",
    "Outputs", "Reader", "ReportRequest", "ReportSection", "Service", "ShiftView", "SiteCache", "SiteView", "Table",
    "ZoneView",
    "load_sample", "sample_config", "settings_parameter", "shift_columns", "shifts_at", "validate_declaration",
]  # fmt: skip

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
TELEMETRY_FIELDS = frozenset(SAMPLE_FIELDS)  # what ``consumes`` may name
# Route helpers moved to sdk_routes (they import FastAPI); these names still resolve here, loaded on first use.
_ROUTE_NAMES = frozenset({
    "BAD_CURSOR", "DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Page", "PageDep", "ServiceRequest", "ServiceRequestDep",
    "TimeRange", "TimeRangeDep", "as_utc", "decode_cursor", "encode_cursor", "page_params", "service_request",
    "time_range",
})


def __getattr__(name: str) -> Any:
    """``from microservices.sdk import PageDep`` keeps working: the route helpers load (with FastAPI) only then."""
    if name in _ROUTE_NAMES:
        from microservices import sdk_routes

        return getattr(sdk_routes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


KPI_INPUTS = frozenset({"newest_samples"})  # what a Kpi may ask the host for besides site_id, start and end


@dataclass(frozen=True)
class Kpi:
    """A value KPI the registry evaluates before and after a service is enabled on a site.

    ``daily_sql`` returns rows ``(day date, value float)`` for ``%(site_id)s`` between
    ``%(start)s`` and ``%(end)s``; the evaluation compares the days before and after. It reads the
    service's own tables (and those of the services it ``depends_on``); what other packages own comes as
    a parameter the KPI names in ``inputs``, filled by the host through the owner's function:

    - ``"newest_samples"``: ``%(newest_samples)s``, a jsonb object machine id -> the time of its newest sample at
      the site (RFC 3339), e.g. to close a machine's last open interval:
      ``LEFT JOIN jsonb_each_text(%(newest_samples)s::jsonb) l(machine_id, ts) ON l.machine_id = x.machine_id``.
    """

    name: str
    description: str
    unit: str
    higher_is_better: bool
    daily_sql: str
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.inputs) - KPI_INPUTS
        if unknown:
            raise SitePulseError(f"KPI {self.name!r}: unknown inputs {sorted(unknown)} (known: {sorted(KPI_INPUTS)})")

    def parameters(self, conn: Any, site_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        """The query parameters of ``daily_sql``: the site and period, plus each input it names."""
        params: dict[str, Any] = {"site_id": site_id, "start": start, "end": end}
        if "newest_samples" in self.inputs:
            from psycopg.types.json import Jsonb

            from ingest.fleet import newest_sample_times

            params["newest_samples"] = Jsonb({machine: ts.isoformat() if ts is not None else None
                                              for machine, ts in newest_sample_times(conn, site_id).items()})
        return params

    def daily(self, conn: Any, site_id: str, start: datetime, end: datetime) -> list[tuple[Any, Any]]:
        """The KPI's ``(day, value)`` rows for the site in ``[start, end)`` (how the host runs it)."""
        return conn.execute(self.daily_sql, self.parameters(conn, site_id, start, end)).fetchall()


@dataclass
class Alert:
    """Something a person should see now: stored once per key in ``service_alerts``, then published as JSON to
    ``sites/{site}/alerts/{service}`` (``alert_channel`` if the service sets one) and shown as an alarm.

    - ``key``: identifies the alert across batches and replays; the same key is stored and sent once. Build it
      from what the data decides (machine, zone, the instant it started), never from arrival or wall-clock time.
    - ``message``: one line for a person (plain text; shown with textContent, never as markup).
    - ``level``: "info", "warning" or "critical" (notification rules filter on it).
    - ``at``: when the condition started (tz-aware); ``machine_id``: the machine it is about, if one.
    - ``data``: JSON-ready details; ``data["zone"]`` (a zone id) files the alarm under that zone.
    - ``ended_at``: when the condition was already over, for an alert raised once it ended (a speeding
      episode): its alarm clears itself at that time. For a condition that ends in a later batch, call
      ``Outputs.clear(key, at, reason)`` then. A cleared alarm stays in the history with its reason.
    """

    key: str
    message: str
    level: str = "warning"
    at: datetime | None = None
    machine_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ended_at: datetime | None = None


@dataclass(frozen=True)
class AlertEnd:
    """The condition behind an earlier alert (same service and ``key``) ended at ``at``: its alarm clears then,
    with ``reason`` in the audit trail ("H1 left blast at 10:04:31 UTC"). Ending a key never raised, or one
    already ended, changes nothing, so a service may end a key again on a replay."""

    key: str
    at: datetime
    reason: str = ""


class AlertList(list[Alert]):
    """The alerts raised by one call of ``process``, plus ``ends``: the alert ends it declared (stored after the
    alerts, in the same transaction, by ``microservices.alerts.store_alerts``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[AlertEnd] = []


class Outputs:
    """What one call of ``process`` produced: rows per table, alerts raised and ended, and how far results are
    final."""

    def __init__(self) -> None:
        self.tables: dict[str, list[pd.DataFrame]] = {}
        self.alerts: AlertList = AlertList()
        self.final_until: datetime | None = None

    @property
    def ends(self) -> list[AlertEnd]:
        """The alert ends declared with ``clear``."""
        return self.alerts.ends

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
        """Raise an alert (see Alert for the fields; ``ended_at=`` for one whose condition is already over)."""
        self.alerts.append(Alert(key=key, message=message, **fields))

    def clear(self, key: str, at: datetime, reason: str = "") -> None:
        """The condition of the alert ``key`` (raised in this batch or an earlier one) ended at ``at``: its alarm
        clears then (see AlertEnd). Every service's alarms clear this way; nothing outside reads its tables."""
        self.alerts.ends.append(AlertEnd(key, at, reason))

    def frames(self) -> dict[str, pd.DataFrame]:
        """One frame per table."""
        return {t: pd.concat(parts, ignore_index=True) for t, parts in self.tables.items()}


@dataclass
class Batch:
    """New telemetry of one site, and what the service may consult while processing it.

    ``telemetry`` is a DataFrame sorted by ``machine_id`` then ``ts`` (then ``seq``), one row per sample:

    ============  =========================  ==========================================================
    column        dtype                      nulls and meaning
    ============  =========================  ==========================================================
    machine_id    object (str)               never null
    ts            datetime64[ns, UTC]        never null; the sample's time, clock-corrected (see below)
    seq           int64                      never null; the device's sequence number (ties on ``ts``)
    received_at   datetime64[ns, UTC]        never null; when ingest received it
    lat, lon      float64                    WGS84 degrees; null (NaN) without a fix
    speed_kmh     float64                    null when not reported
    heading_deg   float64                    null when not reported
    payload_kg    float64                    null when not reported or the load cell sent its sentinel
    fuel_used_l   float64                    cumulative counter; null when not reported
    engine_hours  float64                    cumulative counter; null when not reported
    engine_on     bool                       null (None) when not reported: object dtype then
    extra         object (dict or None)      the sample's other fields, as the device sent them
    device_ts     datetime64[ns, UTC]        only where a clock was corrected: the device's own time
    site_id, xid                             bookkeeping (the batch's site; commit order)
    ============  =========================  ==========================================================

    A float column whose every value in the batch is null comes as object dtype of None: read numbers with
    ``batch.floats(name)`` (float64, NaN where missing). Clock correction (microservices/clock.py) moves the
    samples of a device whose clock runs ahead back in time, so a machine's ``ts`` may step BACK across
    batches (a batch starts before the last ``ts`` of the previous one) and repeat; a service keeps its
    state robust to that (compare, don't assume increase). ``Service.device_time = True`` gets raw device time.

    ``site`` is the parsed site file (None without one); plugins read ``site_view`` (zones, machines, shifts,
    small and stable) instead. ``machines`` is the site's machine registry (machine_id, kind, model,
    rated_payload_kg; births and the site file). ``read(sql, params)`` runs a read-only query (e.g. on a
    dependency's tables) and returns a frame. ``replay`` is true while the runner re-processes after late samples.
    """

    site_id: str
    telemetry: pd.DataFrame
    site: SiteConfig | None
    machines: pd.DataFrame
    read: Reader
    replay: bool = False

    @cached_property
    def site_view(self) -> SiteView:
        """The site's zones, machines and shifts as small read-only records (empty without a site file)."""
        return SiteView.of(self.site)

    def floats(self, name: str) -> np.ndarray:
        """A telemetry column as float64, NaN where missing (or where the column is absent)."""
        if name not in self.telemetry:
            return np.full(len(self.telemetry), np.nan)
        return pd.to_numeric(self.telemetry[name], errors="coerce").to_numpy(float)


@dataclass(frozen=True)
class Card:
    """A site-view card (registry/view.py serves it, registry/api/web/cards.js draws it): a title, headline
    metrics, optional data drawn by its shape, and a link.

    - ``metrics``: ``[{"label": str, "value": number | str | None, "unit": str}]``, shown as big numbers.
    - ``data``: JSON-ready (numpy numbers, timestamps and NaN are converted); each entry is drawn by its shape:
        - ``{"edges...": [n+1 numbers], "counts": [n ints]}``: a histogram (a key starting with ``edges``; one
          ending in ``pct`` gets the payload bands, e.g. ``{"edges_pct": [...], "counts": [...]}``);
        - ``{"label": number, ...}``: a bar chart, one bar per label;
        - ``[{"column": value, ...}, ...]``: a table (first 6 rows and columns; ISO times shown as local time);
        - ``[value, ...]`` or a single value: one line of text;
        - ``"zones"`` and ``"machines"``: kept for the site map, noted as "N zones shown on the map".
      The key, with '_' as spaces, is the caption. Text is set as text, never as markup.
    - ``link``: where "Details" leads: a path relative to the service's API (``"cycles"`` becomes
      ``/api/v1/sites/{site}/{service}/cycles``), an absolute path, or an http(s) URL; None for none.
    """

    title: str
    metrics: list[dict[str, Any]] = field(default_factory=list)  # {"label", "value", "unit"}
    data: dict[str, Any] = field(default_factory=dict)
    link: str | None = None


@dataclass(frozen=True)
class CardContext:
    """What the host hands ``Service.card``: the site as the plugin surface sees it, a reader, and counts other
    packages keep, so a card's own SQL reads only its service's tables (and those of the services it depends on).

    - ``site_id``, ``service``: the site, and the service whose card this is.
    - ``read(sql, params)``: a read-only query, its rows as a DataFrame.
    - ``site``: the site file as a ``SiteView``: zones, declared machines, time zone, shifts (empty without a file).
    - ``machines``: every machine the site knows, by id: the site file's updated by the devices' birth messages
      (``SiteView.with_births``); kind "other" where nobody said.
    - ``now``: when the page is composed (tz-aware UTC); a card's "today" is ``now`` in ``site.timezone``.
    - ``alert_count(cap)``: how many alerts this service has raised at the site, counted up to ``cap``.

    The host builds one per page from what the page already loaded (site file, fleet), so a card costs only its own
    queries. ``microservices.cards.load_card_context(conn, site_id, service)`` builds one on its own (tests).
    """

    site_id: str
    service: str
    read: Reader
    site: SiteView
    machines: Mapping[str, MachineView]
    now: datetime
    # (service, cap) -> count, from microservices.alerts; None: no alerts to count (a context built by hand)
    count_alerts: Callable[[str, int], int] | None = field(default=None, repr=False, compare=False)

    def for_service(self, service: str) -> CardContext:
        """The same page's context for another service's card."""
        return replace(self, service=service)

    def alert_count(self, cap: int = 50) -> int:
        """How many alerts this service has raised at the site (acknowledged and cleared ones too), up to ``cap``."""
        return self.count_alerts(self.service, cap) if self.count_alerts is not None else 0


def card_of(service: Service, context: CardContext, settings: BaseModel) -> Card | None:
    """The service's card (how the host calls it): ``card(context, settings)``, or for a card written to the first
    contract, ``card(site_id, read, settings)``, that one, so plugins written to it keep working."""
    if _takes_site_id_and_read(type(service)):
        return service.card(context.site_id, context.read, settings)  # type: ignore[call-arg, arg-type]
    return service.card(context, settings)


@cache
def _takes_site_id_and_read(cls: type) -> bool:
    """Whether a class's ``card`` has the first contract's three parameters (site_id, read, settings)."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds for p in inspect.signature(cls.card).parameters.values()) == 4  # with self


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

    def card(self, context: CardContext, settings: SettingsT) -> Card | None:
        """An optional card for the site view, computed from the service's tables and ``context`` (CardContext).
        (A card written as ``card(self, site_id, read, settings)`` still works: the host passes those.)"""
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


