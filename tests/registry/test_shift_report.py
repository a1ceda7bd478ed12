"""Shift reports from the real services' tables: each built-in service's section, the PDF's pages looked at as
pictures (none empty, nothing past the margins), the XLSX and CSV, the download route and `sitepulse report`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pypdfium2 as pdfium
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from typer.testing import CliRunner

from microservices.report_sections import Figure, ReportSection, Table
from registry.api.app import create_app
from registry.shift_reports.compose import Report, compose_report
from registry.shift_reports.formats import render
from registry.shift_reports.pdf import CSS, report_html
from registry.tokens import create_token
from sitepulse.settings import load_settings
from tests.registry.shift_report_fixtures import SITE, ProcessedSite, builtin_services, shared_site  # noqa: F401

ADMIN_TOKEN = "shift-report-admin-token-0123456789abcdef"
SCALE = 1.0  # 72 dpi: 1 mm is 2.83 px
MM = 72 / 25.4 * SCALE
SIDE_MARGIN_MM = 16  # pdf.py's @page margins


@pytest.fixture(scope="module")
def site(shared_site: ProcessedSite) -> ProcessedSite:  # noqa: F811 (the fixture imported above)
    return shared_site


@pytest.fixture(scope="module")
def report(site: ProcessedSite) -> Report:
    with psycopg.connect(site.database_url, autocommit=True) as conn:
        return compose_report(conn, builtin_services(), SITE, site.start, site.end + timedelta(minutes=1),
                              "test shift")


@pytest.fixture(scope="module")
def pdf(report: Report) -> bytes:
    return render(report, "pdf")


def _section(report: Report, service: str) -> ReportSection:
    return next(s for s in report.sections if s.service == service)


def _figure(section: ReportSection, label: str) -> Any:
    return next(f.value for f in section.figures if f.label == label)


def test_every_builtin_service_contributes_figures_read_from_its_own_tables(report: Report,
                                                                            site: ProcessedSite) -> None:
    assert report.services == ["data-quality", "positioning", "traffic-awareness", "weight-loading"]
    assert report.site_name == "North Quarry" and report.timezone == "Europe/Stockholm"
    with psycopg.connect(site.database_url) as conn:
        tonnes, loads = conn.execute(
            "SELECT sum(payload_kg) / 1000, count(*) FROM weight_loading.cycles WHERE site_id = %s AND dumped_at >= %s"
            " AND dumped_at < %s", (SITE, report.start, report.end)).fetchone()
        idle_h, all_idle_h = conn.execute(
            "SELECT sum(idle_ms) FILTER (WHERE minute >= %s AND minute < %s) / 3.6e6, sum(idle_ms) / 3.6e6"
            " FROM positioning.activity WHERE site_id = %s", (report.start, report.end, SITE)).fetchone()
    production = _section(report, "weight-loading")
    assert loads >= 5
    assert _figure(production, "Loads") == loads
    assert _figure(production, "Tonnes") == pytest.approx(float(tonnes), abs=0.01)
    by_zone = production.tables[0]
    assert by_zone.columns == ["Load zone", "Dump zone", "Material", "Loads", "Tonnes"]
    assert sum(row[3] for row in by_zone.rows) == loads
    assert {row[0] for row in by_zone.rows} & {"Load area A (north-east face, primary rock)",
                                              "Load area B (north-west bench, overburden)"}
    bands = production.tables[1]
    assert sum(row[1] for row in bands.rows) == loads
    assert 0 < idle_h < all_idle_h  # the period starts inside the first minute: that minute is not in it
    assert _figure(_section(report, "positioning"), "Idle hours") == pytest.approx(float(idle_h), rel=1e-6)
    traffic = _section(report, "traffic-awareness")
    assert [t.title for t in traffic.tables] == ["Encounters by place", "Queue time by zone"]
    quality = _section(report, "data-quality")
    assert quality.figures[0].label in ("Degraded machine-hours", "Degraded machine-minutes")


def _pages(pdf: bytes) -> list[np.ndarray]:
    document = pdfium.PdfDocument(pdf)
    try:
        return [np.asarray(document[i].render(scale=SCALE).to_pil().convert("L")) for i in range(len(document))]
    finally:
        document.close()


def _layout_problems(pdf: bytes) -> list[str]:
    """Empty pages, and ink in a side margin (a table or picture wider than the text column)."""
    problems = []
    for number, page in enumerate(_pages(pdf), start=1):
        ink = page < 200
        height, width = ink.shape
        body = ink[int(25 * MM):height - int(20 * MM), int(SIDE_MARGIN_MM * MM):width - int(SIDE_MARGIN_MM * MM)]
        if body.mean() < 0.002:
            problems.append(f"page {number} is empty")
        margin = int((SIDE_MARGIN_MM - 1.5) * MM)
        left, right = ink[:, :margin], ink[:, width - margin:]
        if left.any() or right.any():
            problems.append(f"page {number}: ink in a side margin")
    return problems


def test_pdf_pages_are_filled_and_nothing_runs_past_the_margins(pdf: bytes, report: Report) -> None:
    document = pdfium.PdfDocument(pdf)
    text = "".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
    document.close()
    assert _layout_problems(pdf) == []
    for expected in ("North Quarry", "Europe/Stockholm", report.period_text, "Production (weight loading)",
                     "Machine hours and speeding (positioning)", "Data quality", "10/10/20 payload policy"):
        assert expected in text.replace("\r\n", " ").replace("\n", " ")


def test_a_long_wide_table_wraps_and_breaks_across_pages_inside_the_margins(report: Report) -> None:
    wide = Table("Forty wide rows", [f"column {i}" for i in range(12)],
                 [[f"{'unbrokenwordthatwouldoverflow' * 2}-{r}"] * 12 for r in range(25)])
    stressed = replace(report, sections=[ReportSection("Stress", [Figure("Rows", 25)], [wide], service="x")])
    pdf = render(stressed, "pdf")
    assert len(pdfium.PdfDocument(pdf)) >= 2
    assert _layout_problems(pdf) == []


def test_the_margin_check_sees_a_table_that_overflows(report: Report, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: without the fixed layout and wrapping, the same table runs off the page."""
    wide = Table("Wide", [f"column {i}" for i in range(12)], [["unbrokenwordthatwouldoverflow" * 2] * 12])
    stressed = replace(report, sections=[ReportSection("Stress", tables=[wide], service="x")])
    import registry.shift_reports.pdf as pdf_module

    monkeypatch.setattr(pdf_module, "CSS", CSS.replace("table-layout: fixed;", "").replace(
        "overflow-wrap: anywhere;", ""))
    assert any("side margin" in p for p in _layout_problems(render(stressed, "pdf")))


def test_text_a_person_typed_is_shown_as_text_never_as_markup_or_a_formula(report: Report) -> None:
    typed = Table("Zones", ["Zone", "Tonnes"], [["<img src=x onerror=alert(1)>", 1.0], ["=HYPERLINK(\"x\")", 2.0]])
    made = replace(report, sections=[ReportSection("Typed <b>names</b>", tables=[typed], service="x")])
    html = report_html(made)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>names</b>" not in html
    rows = list(csv.reader(io.StringIO(render(made, "csv").decode("utf-8-sig"))))
    assert ["'=HYPERLINK(\"x\")", "2.0"] in rows
    sheet = load_workbook(io.BytesIO(render(made, "xlsx"))).worksheets[0]
    assert "'=HYPERLINK(\"x\")" in [c.value for row in sheet.iter_rows() for c in row]


def test_a_server_without_pango_says_so_in_one_line(report: Report, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from registry.shift_reports.formats import PDF_NEEDS
    from sitepulse.errors import SitePulseError

    monkeypatch.delitem(sys.modules, "registry.shift_reports.pdf")
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # importing it now fails, as without Pango
    with pytest.raises(SitePulseError) as refused:
        render(report, "pdf")
    assert str(refused.value) == PDF_NEEDS
    assert render(report, "csv").startswith("\ufeffNorth Quarry".encode())


def test_xlsx_has_one_sheet_per_section_and_csv_every_table(report: Report) -> None:
    book = load_workbook(io.BytesIO(render(report, "xlsx")))
    assert len(book.sheetnames) == len(report.sections) == 4
    production = book[book.sheetnames[[s.service for s in report.sections].index("weight-loading")]]
    values = [[c.value for c in row] for row in production.iter_rows()]
    assert values[0] == ["North Quarry"] + [None] * (len(values[0]) - 1)
    header = values.index(["Load zone", "Dump zone", "Material", "Loads", "Tonnes"] + [None] * (len(values[0]) - 5))
    assert isinstance(values[header + 1][3], int)
    rows = list(csv.reader(io.StringIO(render(report, "csv").decode("utf-8-sig"))))
    assert rows[0] == ["North Quarry"]
    assert sum(1 for r in rows if r[:1] == ["section"]) == 4
    assert sum(1 for r in rows if r[:1] == ["table"]) == sum(len(s.tables) for s in report.sections)


@pytest.fixture(scope="module")
def client(mqtt_broker: Any, site: ProcessedSite) -> Iterator[TestClient]:
    app = create_app(site.database_url, mqtt_broker.url, services=builtin_services(),
                     settings=load_settings(admin_token=ADMIN_TOKEN, reports_poll_s=3600))
    with TestClient(app) as client:
        yield client


def test_any_past_period_downloads_and_counts_a_reader_per_service(client: TestClient,
                                                                    site: ProcessedSite) -> None:
    with psycopg.connect(site.database_url, autocommit=True) as conn:
        token = create_token(conn, "north manager", [SITE]).token
        other = create_token(conn, "elsewhere", ["south"]).token
    params = {"from": site.start.isoformat(), "to": (site.end + timedelta(minutes=1)).isoformat(), "format": "xlsx"}
    response = client.get(f"/api/v1/sites/{SITE}/reports", params=params, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert 'filename="sitepulse-report-quarry-' in response.headers["content-disposition"]
    assert len(load_workbook(io.BytesIO(response.content)).sheetnames) == 4
    from registry.api.state import state_of

    assert state_of(client.app).usage.flush()
    with psycopg.connect(site.database_url) as conn:
        readers = conn.execute("SELECT service FROM usage_events WHERE site_id = %s AND action = 'report_opened'"
                               " AND principal = 'north manager' ORDER BY service", (SITE,)).fetchall()
    assert [r[0] for r in readers] == ["data-quality", "positioning", "traffic-awareness", "weight-loading"]
    hidden = client.get(f"/api/v1/sites/{SITE}/reports", params=params, headers={"Authorization": f"Bearer {other}"})
    assert hidden.status_code == 404
    bad = client.get(f"/api/v1/sites/{SITE}/reports", params={**params, "format": "docx"},
                     headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 422 and "format" in bad.json()["detail"]
    open_ended = client.get(f"/api/v1/sites/{SITE}/reports", params={"to": params["to"]},
                            headers={"Authorization": f"Bearer {token}"})
    assert open_ended.status_code == 422 and "from and to" in open_ended.json()["detail"]


def test_cli_writes_the_report_and_refuses_a_bad_site_with_a_user_error(site: ProcessedSite,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``sitepulse report`` as the console script mounts it (a user error becomes its one red line there)."""
    from sitepulse.cli import build_app
    from sitepulse.errors import NotFound
    from sitepulse.settings import get_settings

    monkeypatch.setenv("SITEPULSE_DATABASE_URL", site.database_url)
    get_settings.cache_clear()
    out = tmp_path / "shift.csv"
    args = ["report", "--site", SITE, "--from", site.start.isoformat(),
            "--to", (site.end + timedelta(minutes=1)).isoformat(), "--format", "csv", "-o", str(out)]
    try:
        done = CliRunner().invoke(build_app(), args)
        assert done.exit_code == 0, done.output
        assert out.read_text(encoding="utf-8-sig").splitlines()[0] == "North Quarry"
        missing = CliRunner().invoke(build_app(), [*args[:2], "nowhere", *args[3:]])
        assert isinstance(missing.exception, NotFound) and str(missing.exception) == "site 'nowhere' not found"
        backwards = CliRunner().invoke(build_app(), [*args[:4], args[6], "--to", args[4], *args[7:]])
        assert "--to must be after --from" in str(backwards.exception)
    finally:
        get_settings.cache_clear()
