"""A report as a PDF: HTML and CSS laid out by WeasyPrint, charts as pictures, every text escaped.

Each page carries the site's name, the period with its time zone and the page number in its margins; tables
repeat their header on a new page, wrap long cells and never grow wider than the text column (fixed layout).
"""

from __future__ import annotations

import base64
from html import escape

from weasyprint import HTML

from microservices.report_sections import ReportSection, Table
from registry.shift_reports.charts import chart_png
from registry.shift_reports.compose import Report

CSS = """
@page { size: A4; margin: 22mm 16mm 18mm 16mm;
  @top-left { content: string(site); font: 600 9pt sans-serif; color: #1f3b4d; }
  @top-right { content: string(period); font: 8pt sans-serif; color: #555; }
  @bottom-left { content: "SitePulse report"; font: 7pt sans-serif; color: #777; }
  @bottom-right { content: "page " counter(page) " of " counter(pages); font: 7pt sans-serif; color: #777; } }
body { font: 9pt "DejaVu Sans", sans-serif; color: #1b1b1b; }
.site { string-set: site content(); } .period { string-set: period content(); }
.generated { color: #777; font-size: 7.5pt; }
h1 { font-size: 16pt; margin: 0 0 2mm; color: #1f3b4d; }
h2 { font-size: 12pt; margin: 7mm 0 2mm; padding-bottom: 1mm; border-bottom: 1px solid #1f6f8b; color: #1f3b4d;
     break-after: avoid; }
h3 { font-size: 9.5pt; margin: 4mm 0 1.5mm; break-after: avoid; }
.lead { color: #444; margin: 0 0 3mm; }
.figures { display: flex; flex-wrap: wrap; gap: 2mm; margin: 2mm 0; }
.figure { border: 1px solid #d5dde2; border-radius: 2mm; padding: 1.5mm 3mm; min-width: 28mm; }
.figure .value { font-size: 12pt; font-weight: 600; } .figure .label { font-size: 7.5pt; color: #555; }
table { width: 100%; table-layout: fixed; border-collapse: collapse; margin: 1mm 0 2mm; }
th, td { padding: 1mm 1.5mm; border-bottom: 0.5px solid #d5dde2; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; hyphens: auto; font-size: 8pt; }
th { background: #eef3f6; font-weight: 600; } thead { display: table-header-group; }
tr { break-inside: avoid; } td.num, th.num { text-align: right; } .empty { color: #777; font-style: italic; }
img.chart { width: 100%; margin: 1mm 0 2mm; break-inside: avoid; }
.note { color: #555; font-size: 8pt; margin: 1mm 0; }
"""


def render_pdf(report: Report) -> bytes:
    """The report as PDF bytes."""
    return HTML(string=report_html(report)).write_pdf()


def report_html(report: Report) -> str:
    """The report as one HTML document (data escaped; pictures as data: URIs, so nothing is fetched)."""
    e = escape
    head = (f'<h1 class="site">{e(report.site_name)}</h1>'
            f'<p class="lead"><span class="period">{e(report.label)} &middot; {e(report.period_text)}</span><br>'
            f'<span class="generated">generated {e(report.local(report.generated_at))} ({e(report.timezone)})'
            "</span></p>")
    body = "".join(_section(s) for s in report.sections) or \
        '<p class="empty">No service is switched on for this site: nothing to report.</p>'
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(report.site_name)} '
            f"{e(report.label)}</title><style>{CSS}</style></head><body>{head}{body}</body></html>")


def _section(section: ReportSection) -> str:
    e = escape
    figures = "".join(f'<div class="figure"><div class="value">{e(f.text())}</div><div class="label">'
                      f"{e(f.label)}</div></div>" for f in section.figures)
    parts = [f"<section><h2>{e(section.title)}</h2>"]
    if figures:
        parts.append(f'<div class="figures">{figures}</div>')
    parts.extend(f'<p class="note">{e(note)}</p>' for note in section.notes)
    for chart in section.charts:
        png = base64.b64encode(chart_png(chart)).decode("ascii")
        parts.append(f'<img class="chart" alt="{e(chart.title)}" src="data:image/png;base64,{png}">')
    parts.extend(_table(t) for t in section.tables)
    parts.append("</section>")
    return "".join(parts)


def _table(table: Table) -> str:
    e = escape
    numeric = [all(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in table.rows
                   if i < len(r) and r[i] is not None) for i in range(len(table.columns))]
    head = "".join(f'<th{" class=num" if num else ""}>{e(str(c))}</th>'
                   for c, num in zip(table.columns, numeric, strict=True))
    if not table.rows:
        return f'<h3>{e(table.title)}</h3><p class="empty">none in this period</p>'
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table.rows)
    return (f"<h3>{e(table.title)}</h3><table>{_widths(table)}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
            "</table>")


def _widths(table: Table) -> str:
    """Column widths in proportion to their longest text (clamped to 5-40 characters): the fixed layout keeps the
    table inside the page, this keeps a long zone name from being squeezed beside a short number."""
    longest = [max([len(str(c)) * 0.8, *(len(_text(r[i])) for r in table.rows if i < len(r))])
               for i, c in enumerate(table.columns)]
    clamped = [min(max(n, 5), 40) for n in longest]
    total = sum(clamped)
    return "<colgroup>" + "".join(f'<col style="width: {100 * n / total:.1f}%">' for n in clamped) + "</colgroup>"


def _text(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.1f}"
    return "-" if value is None else str(value)


def _cell(value: object) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int | float):
        text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
        return f'<td class="num">{text}</td>'
    return f"<td>{escape(str(value))}</td>"
