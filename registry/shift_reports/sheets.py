"""A report as a workbook (openpyxl, one sheet per section) or as CSV (the sections one after another).

Cells are written as values, never formulas: a machine or zone name starting with '=' stays text
(``registry.spreadsheet.inert``; openpyxl would store such a str as a formula).
"""

from __future__ import annotations

import csv
import io
import re

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from registry.shift_reports.compose import Report
from registry.spreadsheet import inert

BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
_safe = inert


def _heading(report: Report) -> list[list[object]]:
    return [[report.site_name], [report.label], [f"Period: {report.period_text}"]]


def render_xlsx(report: Report) -> bytes:
    """One sheet per section: the heading, the figures, then each table under its title."""
    book = Workbook()
    book.remove(book.active)
    bold = Font(bold=True)
    used: set[str] = set()
    for index, section in enumerate(report.sections or [], start=1):
        name = BAD_SHEET_CHARS.sub(" ", section.title)[:28].strip() or "Section"
        if name in used:
            name = f"{name[:25]} {index}"
        used.add(name)
        sheet = book.create_sheet(name)
        for row in _heading(report):
            sheet.append([_safe(v) for v in row])
        sheet["A1"].font = bold
        sheet.append([_safe(section.title)])
        sheet.cell(sheet.max_row, 1).font = bold
        for figure in section.figures:
            sheet.append([_safe(figure.label), _safe(figure.value), figure.unit])
        for note in section.notes:
            sheet.append([_safe(note)])
        for table in section.tables:
            sheet.append([])
            sheet.append([_safe(table.title)])
            sheet.cell(sheet.max_row, 1).font = bold
            sheet.append([_safe(c) for c in table.columns])
            for cell in sheet[sheet.max_row]:
                cell.font = bold
            for row in table.rows:
                sheet.append([_safe(v) for v in row])
        for column in range(1, sheet.max_column + 1):
            sheet.column_dimensions[get_column_letter(column)].width = 18
    if not book.sheetnames:
        sheet = book.create_sheet("Report")
        for row in [*_heading(report), ["No service is switched on for this site: nothing to report."]]:
            sheet.append([_safe(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def render_csv(report: Report) -> bytes:
    """The sections one after another: a section line, its figures, then each table with its header; UTF-8 with
    a byte-order mark so spreadsheet programs read accents right."""
    out = io.StringIO()
    writer = csv.writer(out)
    for row in _heading(report):
        writer.writerow([_safe(v) for v in row])
    for section in report.sections:
        writer.writerow([])
        writer.writerow(["section", _safe(section.title)])
        for figure in section.figures:
            writer.writerow(["figure", _safe(figure.label), _safe(figure.value), figure.unit])
        for note in section.notes:
            writer.writerow(["note", _safe(note)])
        for table in section.tables:
            writer.writerow(["table", _safe(table.title)])
            writer.writerow([_safe(c) for c in table.columns])
            writer.writerows([[_safe(v) for v in row] for row in table.rows])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
