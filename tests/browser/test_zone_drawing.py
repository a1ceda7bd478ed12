"""Zones drawn in a real browser (issue 33): an admin redraws the demo quarry's load area A on the map, saves, the
new version is served, and the services running on live telemetry use the new zone from then on, while what they
stored before stays as it was.

The stack is test_dashboard's (real PostgreSQL and Mosquitto, ingest, the service runner, the API and the simulator
at 30x as subprocesses); Debian's Chromium is driven by Playwright; the screenshot goes to docs/figures/.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.browser import test_dashboard as dashboard
from tests.browser.test_dashboard import ADMIN, Stack, _wait_api

pytestmark = pytest.mark.slow  # real processes or a browser: the parallel long step (make test)

stack, browser, page = dashboard.stack, dashboard.browser, dashboard.page  # its fixtures, a stack for this module

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures"
NEW_ID = "face-a-redrawn"


def _get(stack: Stack, path: str) -> Any:
    answer = httpx.get(stack.base + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _draw_around(page: Any, zone_id: str) -> None:
    """Draw a polygon with Geoman's tool a few pixels outside the zone's outline, closing it on its first corner."""
    box = page.locator(f"path.editable-zone[data-zone='{zone_id}']").bounding_box()
    left, top, right, bottom = box["x"] - 8, box["y"] - 8, box["x"] + box["width"] + 8, box["y"] + box["height"] + 8
    corners = [(left, top), (right, top), (right, bottom), (left, bottom)]
    page.locator(".leaflet-pm-icon-polygon").click()
    for x, y in [*corners, corners[0]]:
        page.mouse.click(x, y)
        page.wait_for_timeout(150)


def test_an_admin_redraws_the_load_zone_and_the_services_use_it(page: Any, stack: Stack) -> None:
    before = _get(stack, "/api/v1/sites/demo")
    _wait_api(stack, "/api/v1/sites/demo/positioning/zone-events?zone=load-a&limit=5", lambda b: b["items"], 90,
              "no machine entered load area A")
    page.goto(stack.base + "/")
    page.get_by_label("Access token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector(".site-list")
    page.goto(stack.base + "/#/sites/demo/zones")
    page.wait_for_selector(".leaflet-pm-icon-polygon")
    page.get_by_role("button", name="Show Load area A (north-east face, primary rock) on the map").click()
    page.wait_for_timeout(600)  # the map's zoom animation
    _draw_around(page, "load-a")
    name = page.locator(".zone-row").last.locator("input.zone-name")
    name.fill("Face A (redrawn)")
    page.locator(".zone-row").last.locator("select.zone-type").select_option("load")
    page.locator(".zone-row").last.locator("input.zone-limit").fill("15")
    page.get_by_role("button", name="Delete Load area A (north-east face, primary rock)").click()
    page.fill("#zones-note", "face moved: redrawn around the new working area")
    page.get_by_role("button", name="Save as a new version").click()
    status = page.get_by_test_id("zones-status")
    page.wait_for_function("() => document.querySelector('[data-testid=zones-status]').textContent.startsWith('Saved')")
    assert page.get_by_test_id("zones-error").text_content() == ""
    page.screenshot(path=str(FIGURES / "zone-drawing.png"))

    # the new version is served, the old one kept and the change audited
    after = _get(stack, "/api/v1/sites/demo")
    assert after["version"] == before["version"] + 1 and f"version {after['version']}" in status.text_content()
    zones = {z["id"]: z for z in after["config"]["zones"]}
    assert "load-a" not in zones and zones[NEW_ID]["type"] == "load" and zones[NEW_ID]["speed_limit_kmh"] == 15
    latest = _get(stack, "/api/v1/sites/demo/versions")["items"][0]
    assert latest["source"] == "drawing" and latest["created_by"] == "bootstrap-admin"
    assert latest["changes"] == {"added": [NEW_ID], "changed": [], "removed": ["load-a"]}
    assert page.locator(f"[data-testid=site-versions] tr[data-version='{after['version']}']").count() == 1
    old = _get(stack, f"/api/v1/sites/demo/versions/{before['version']}")
    assert "load-a" in {z["id"] for z in old["config"]["zones"]}

    # the services use the new zone from the next batches on: a machine enters it, a cycle loads in it ...
    _wait_api(stack, f"/api/v1/sites/demo/positioning/zone-events?zone={NEW_ID}&limit=5", lambda b: b["items"], 120,
              "no machine entered the redrawn zone")
    _wait_api(stack, "/api/v1/sites/demo/weight-loading/cycles?limit=1000",
              lambda b: any(c["load_zone"] == NEW_ID for c in b["items"]), 120, "no cycle loaded in the redrawn zone")
    # ... and what was computed before is not rewritten
    assert _get(stack, "/api/v1/sites/demo/positioning/zone-events?zone=load-a&limit=5")["items"]

    # playback replays what the services stored: tracks of the simulated fleet, entries into both zones
    start = min(e["entered_at"] for e in _get(stack, "/api/v1/sites/demo/positioning/zone-events?limit=1")["items"])
    end = (datetime.fromisoformat(start) + timedelta(hours=4)).isoformat()
    replay = _get(stack, f"/api/v1/sites/demo/playback?from={quote(start)}&to={quote(end)}")
    assert len(replay["machines"]) >= 6 and all(len(m["t"]) == len(m["s"]) >= 2 for m in replay["machines"])
    entered = {e["zone"] for e in replay["events"] if e["kind"] == "zone"}
    assert {"load-a", NEW_ID} <= entered, entered

    # an earlier version restored from the table comes back as a new version, the history kept whole
    page.get_by_role("button", name=f"Restore version {before['version']}").click()
    page.wait_for_selector(f"[data-testid=site-versions] tr[data-version='{after['version'] + 1}']")
    restored = _get(stack, "/api/v1/sites/demo")
    assert restored["version"] == after["version"] + 1
    assert "load-a" in {z["id"] for z in restored["config"]["zones"]} and NEW_ID not in {
        z["id"] for z in restored["config"]["zones"]}
    assert page.locator("path.editable-zone[data-zone='load-a']").count() == 1
