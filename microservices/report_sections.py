"""What a service contributes to a site's shift or daily report: sections of figures, tables and charts.

A report is a plugin surface like the site view's cards: the host asks each service enabled on the site for its
sections of one period (``Service.report(request, settings)``), and renders them all to PDF, XLSX or CSV
(``registry/shift_reports``). A section is plain data, never markup: the renderers escape every text, so a zone
or machine name a person typed cannot change the document.

    def report(self, request: ReportRequest, settings: MySettings) -> list[ReportSection]:
        cycles = request.read("SELECT ... WHERE site_id = %(site_id)s AND t >= %(start)s AND t < %(end)s",
                              request.params())
        return [ReportSection("Idle time", figures=[Figure("Idle", 3.5, "h")],
                              tables=[Table.of(cycles, title="Idle per machine")])]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pandas as pd

from sitepulse.sitefile import SiteConfig

Reader = Callable[[str, Mapping[str, Any]], pd.DataFrame]


@dataclass(frozen=True)
class Figure:
    """One headline number (or a short verdict) with its unit."""

    label: str
    value: float | int | str | None
    unit: str = ""

    def text(self) -> str:
        """The value as a person reads it: thousands separated, at most one decimal, '-' when unknown."""
        value = self.value
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        shown = f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"
        return f"{shown} {self.unit}".strip()


@dataclass(frozen=True)
class Table:
    """A titled table: column headers and rows of plain values (str, numbers, None)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    @classmethod
    def of(cls, frame: pd.DataFrame, title: str, columns: Mapping[str, str] | None = None,
           digits: int = 1) -> Table:
        """A table from a frame, its columns renamed by ``columns`` (old -> header; others kept as they are),
        floats rounded to ``digits`` and NaN as None."""
        columns = dict(columns or {})
        shown = frame[list(columns)] if columns else frame
        rows = [[_plain(v, digits) for v in row] for row in shown.itertuples(index=False, name=None)]
        return cls(title, [columns.get(c, str(c)) for c in shown.columns], rows)


@dataclass(frozen=True)
class Chart:
    """A bar chart: one bar (or stack, with ``stacked``) per category, one colour per series."""

    title: str
    categories: list[str]
    series: dict[str, list[float]]
    unit: str = ""
    kind: Literal["bar", "barh"] = "bar"
    stacked: bool = False


@dataclass(frozen=True)
class ReportSection:
    """One service's part of a report; ``order`` places it (lower first: production before data quality),
    ``service`` is filled by the host."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    order: int = 50
    service: str = ""


@dataclass(frozen=True)
class ReportRequest:
    """The period a report covers on one site, and how a service reads its own tables for it.

    ``start``/``end`` are UTC (``end`` exclusive); ``timezone`` is the site's, for showing local times;
    ``read(query, params)`` runs a read-only query on the host's connection (the SDK's card reader).
    """

    site_id: str
    start: datetime
    end: datetime
    timezone: str
    site: SiteConfig | None
    read: Reader

    def params(self, **more: Any) -> dict[str, Any]:
        """``site_id``, ``start`` and ``end`` for a query, plus ``more``."""
        return {"site_id": self.site_id, "start": self.start, "end": self.end, **more}

    def zone_label(self, zone_id: Any) -> str:
        """What the site manager calls a zone: its drawn name, else its id; '(outside zones)' for none."""
        if zone_id is None or (isinstance(zone_id, float) and math.isnan(zone_id)) or zone_id == "":
            return "(outside zones)"
        if self.site is not None:
            for zone in self.site.zones:
                if zone.id == zone_id:
                    return zone.label
        return str(zone_id)


def _plain(value: Any, digits: int) -> Any:
    """A cell as a plain Python value: numpy scalars unwrapped, floats rounded, NaN/NaT as None, times as text."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, digits)
    if isinstance(value, pd.Timestamp | datetime):
        return None if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")
    return value


def bar_chart(title: str, frame: pd.DataFrame, category: str, values: Sequence[str], unit: str = "",
              labels: Mapping[str, str] | None = None, **options: Any) -> Chart:
    """A chart of ``frame``: one category per row (``category`` column), one series per column in ``values``."""
    labels = dict(labels or {})
    return Chart(title, [str(c) for c in frame[category]],
                 {labels.get(v, v): [float(x) if pd.notna(x) else 0.0 for x in frame[v]] for v in values},
                 unit=unit, **options)
