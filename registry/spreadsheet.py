"""CSV cells a spreadsheet would run as a formula, made inert (CSV/formula injection, OWASP).

Excel, LibreOffice and Google Sheets evaluate a cell starting with ``=``, ``+``, ``-`` or ``@`` (and, in some,
after a leading tab or carriage return) as a formula: a customer name ``=HYPERLINK(...)`` or a zone named
``=cmd|' /C calc'!A0`` in a usage report or a data export runs on the reader's machine. Such a cell gets a
leading apostrophe, which spreadsheets show as text. Numbers (``-3.5``, ``+1e-3``) are data, not formulas, and
stay as they are so exports still load as numbers.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import IO, Any

from psycopg import sql

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# the same test in PostgreSQL's regular expressions, for exports written by COPY
_SQL_TRIGGER = "^[-=+@\t\r]"
_SQL_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
TEXT_TYPES = frozenset({"text", "character varying", "character", "name"})


def inert(value: Any) -> Any:
    """``value`` as a cell no spreadsheet runs: a text starting a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(TRIGGERS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def inert_row(values: Iterable[Any]) -> list[Any]:
    return [inert(v) for v in values]


class InertCsvWriter:
    """``csv.writer`` (``\\n`` line ends) whose cells are inert; a row holding a carriage return is written with
    its texts quoted (with ``\\n`` line ends the csv module leaves a lone CR bare, and readers end the row there:
    a cell ``\\r=1+2`` became a row of its own starting with a live formula)."""

    def __init__(self, buffer: IO[str]) -> None:
        self.minimal = csv.writer(buffer, lineterminator="\n")
        self.quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)

    def writerow(self, values: Iterable[Any]) -> None:
        cells = inert_row(values)
        carriage_return = any(isinstance(c, str) and "\r" in c for c in cells)
        (self.quoted if carriage_return else self.minimal).writerow(cells)


def inert_sql(column: sql.Composable) -> sql.Composable:
    """The SQL expression of ``column`` (a text) with the same rule applied."""
    return sql.SQL("CASE WHEN {c} ~ {t} AND {c} !~ {n} THEN '''' || {c} ELSE {c} END").format(
        c=column, t=sql.Literal(_SQL_TRIGGER), n=sql.Literal(_SQL_NUMBER))
