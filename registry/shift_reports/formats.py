"""The formats a report is rendered to, by name: the bytes, the media type and the file extension."""

from __future__ import annotations

from collections.abc import Callable

from registry.shift_reports.compose import Report
from sitepulse.errors import InvalidInput, SitePulseError

FORMATS: dict[str, str] = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}

PDF_NEEDS = ("PDF reports need WeasyPrint and Pango, which this server lacks (Debian: apt-get install libpango-1.0-0"
             " libpangoft2-1.0-0); XLSX and CSV work without them")


def renderer(fmt: str) -> Callable[[Report], bytes]:
    """The function rendering ``fmt``; InvalidInput naming the formats for another (imported on first use: a
    PDF needs WeasyPrint and matplotlib, a CSV neither)."""
    if fmt == "pdf":
        try:
            from registry.shift_reports.pdf import render_pdf
        except (ImportError, OSError):  # WeasyPrint loads Pango when imported
            raise SitePulseError(PDF_NEEDS) from None
        return render_pdf
    if fmt == "xlsx":
        from registry.shift_reports.sheets import render_xlsx

        return render_xlsx
    if fmt == "csv":
        from registry.shift_reports.sheets import render_csv

        return render_csv
    raise InvalidInput(f"unknown report format {fmt!r}; formats: {', '.join(FORMATS)}")


def render(report: Report, fmt: str) -> bytes:
    """The report as a file of format ``fmt``."""
    return renderer(fmt)(report)


def file_name(report: Report, fmt: str) -> str:
    """A download's file name: site, period start (local) and format, in safe characters only."""
    stamp = report.local(report.start).replace(" ", "_").replace(":", "")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in report.site_id)
    return f"sitepulse-report-{safe}-{stamp}.{fmt}"
