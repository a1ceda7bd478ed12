"""Text that users and devices write leaves SitePulse inert: CSV cells never start a spreadsheet formula, and the
ISO 15143-3 (AEMP) XML feed parses whatever characters a device sent (issue 35)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest

from ingest.contract import Decoded, Decoder
from ingest.writer import TelemetryWriter
from registry.reports import COUNTS, usage_csv
from registry.spreadsheet import inert
from tests.security.conftest import SQUARE, SecureApi

FORMULAS = ["=1+2", "+1+2", "-2+3", "@SUM(A1:A2)", "\t=1+2", "\r=1+2", "=HYPERLINK(\"http://x\",\"y\")",
            "-cmd|' /C calc'!A0"]
NUMBERS = ["-3.5", "+1e-3", "42", "-.5", "2026-11-03T00:00:00Z"]


@pytest.mark.parametrize("text", FORMULAS)
def test_a_formula_becomes_text(text: str) -> None:
    assert inert(text) == "'" + text


@pytest.mark.parametrize("value", [*NUMBERS, -3.5, 7, None, "plain", "a=b"])
def test_numbers_and_plain_text_stay_as_they_are(value: object) -> None:
    assert inert(value) == value


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _formula_cells(rows: list[list[str]]) -> list[str]:
    return [c for row in rows for c in row if c.startswith(("=", "+", "@", "\t", "\r"))
            or (c.startswith("-") and not c.lstrip("-").replace(".", "", 1).replace("e-", "", 1).isdigit())]


def test_usage_csv_cells_are_inert(secure: SecureApi) -> None:
    """The finding: a customer named ``=1+2`` came out of usage.csv as a live formula."""
    for site_id, customer in (("north", "=1+2"), ("south", "@SUM(A1:A9)")):
        response = secure.client.put(f"/api/v1/sites/{site_id}/customer", json={"customer": customer},
                                     headers=secure.admin)
        assert response.status_code == 200, response.text
    response = secure.client.get("/api/v1/usage?format=csv&from=2026-10-01T00:00:00Z", headers=secure.admin)
    assert response.status_code == 200, response.text
    rows = _cells(response.text)
    customers = {row[0] for row in rows[1:]}
    assert {"'=1+2", "'@SUM(A1:A9)"} <= customers, customers
    assert not _formula_cells(rows), _formula_cells(rows)


def test_usage_csv_renders_every_formula_shape_inert() -> None:
    now = datetime(2026, 11, 3, tzinfo=UTC)
    items = [{"customer": text, "site_id": "s", "service": "svc", "from": now, "to": now,
              **dict.fromkeys(COUNTS, 0), "alerts_delivered": 0, "alerts_acknowledged": 0, "machines_covered": 0,
              "volume": {"name": text, "value": -2.5, "unit": text}} for text in FORMULAS]
    rows = _cells(usage_csv(items))
    assert not _formula_cells(rows), _formula_cells(rows)
    assert [row[0] for row in rows[1:]] == ["'" + t for t in FORMULAS]
    assert all("-2.5" in row for row in rows[1:])  # numbers stay numbers


def test_a_data_export_keeps_zone_names_inert_and_numbers_numeric(secure: SecureApi) -> None:
    """Zone names (site-file text) are joined into exports beside each zone id."""
    site = {"name": "North", "zones": [
        {"id": "load-a", "type": "load", "name": "=HYPERLINK(\"http://evil\",\"x\")", "polygon": SQUARE},
        {"id": "dump-a", "type": "dump", "name": "-2+3", "polygon": [[18.006, 59.0], [18.008, 59.0],
                                                                   [18.008, 59.002], [18.006, 59.002]]}],
        "machines": [{"id": "N1", "kind": "hauler", "model": "A30G", "rated_payload_kg": 28000}]}
    response = secure.client.put("/api/v1/sites/north", content=json.dumps(site),
                                 headers={**secure.admin, "Content-Type": "application/yaml"})
    assert response.status_code == 200, response.text
    response = secure.client.get("/api/v1/sites/north/export/positioning/zone_visits?format=csv"
                                 "&from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z", headers=secure.admin)
    assert response.status_code == 200, response.text
    rows = _cells(response.text)
    header = rows[0]
    assert "zone_name" in header, header
    names = {row[header.index("zone_name")] for row in rows[1:]}
    assert names and names <= {"'=HYPERLINK(\"http://evil\",\"x\")", "'-2+3"}, names
    assert not _formula_cells(rows), _formula_cells(rows)
    telemetry = _cells(secure.client.get("/api/v1/sites/north/export/telemetry?format=csv&from=2026-11-01T00:00:00Z"
                                         "&to=2026-11-03T00:00:00Z", headers=secure.admin).text)
    lon = telemetry[0].index("lon")
    assert all(float(row[lon]) > 18 for row in telemetry[1:])  # numeric columns untouched


def _birth(url: str, site_id: str, machine: str, payload: dict) -> None:
    decoder, out = Decoder(), Decoded()
    decoder.decode_into(out, f"sites/{site_id}/machines/{machine}/birth", json.dumps(payload).encode(),
                        datetime.now(UTC))
    assert out.births, "the birth was rejected"
    with TelemetryWriter(url) as writer:
        writer.write(out)


def test_the_aemp_xml_feed_parses_whatever_a_device_sent(secure: SecureApi) -> None:
    """The finding: a birth with ``"model":"A30G\\u0001"`` made GET /aemp/Fleet/1 (XML) unparseable."""
    controls = "".join(chr(c) for c in range(1, 32))
    _birth(secure.url, "north", "N1", {"kind": "hauler", "model": "Volvo A30G\u0001\u001f<&>\"'",
                                       "serial_number": controls, "pin": {"<bad name>": [1, "\u0002"]},
                                       "oem": "\ufffe\uffffVolvo"})
    response = secure.client.get("/aemp/Fleet/1", headers={**secure.admin, "Accept": "application/xml"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(response.content)  # expat: refuses any character XML 1.0 does not allow
    header = next(e.find("EquipmentHeader") for e in root.iter("Equipment")
                  if e.find("EquipmentHeader/EquipmentID").text == "north:N1")
    assert header.find("Model").text == "Volvo A30G\ufffd\ufffd<&>\"'"
    assert header.find("OEMName").text == "\ufffd\ufffdVolvo"
    # tab, LF and CR are XML characters (a parser reads a CR as LF, XML's end-of-line rule)
    assert header.find("SerialNumber").text == "\ufffd" * 8 + "\t\n\ufffd\ufffd\n" + "\ufffd" * 18
    assert json.loads(header.find("PIN").text.replace("\ufffd", "\\u0002")) == {"<bad name>": [1, "\u0002"]}
    assert [child.tag for child in header] == ["OEMName", "Model", "EquipmentID", "SerialNumber", "PIN"]
