"""Playback in a real browser (issue 33): a stored hour of six machines replayed on the map.

A real PostgreSQL holds the tables the playback route reads, filled as the services leave them
(``playback_shift.seed_shift``); the API runs in process; Debian's Chromium is driven by Playwright. The slider moves
every machine, the events of the moment are listed and highlighted, the keyboard plays, pauses and jumps, the period
is fetched once, and a message with markup in it shows as text. The screenshot goes to docs/figures/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from microservices.alerts import store_alerts
from microservices.discovery import discover_services
from microservices.sdk import Alert
from registry.enablement import set_enablement
from registry.tokens import create_token
from simulators.site import load_site
from sitepulse.sites import save_site
from tests.browser.playback_shift import Seeded, seed_shift, serve_api, shift_period
from tests.browser.test_dashboard import CHROMIUM, _need_browser

pytestmark = pytest.mark.slow  # real processes or a browser: the parallel long step (make test)

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"
ADMIN = "playback-admin-token-0123456789abcdef0123"
MARKUP = '<img src=x onerror="window.hacked=1">Grader at the junction'


class Shift:
    def __init__(self, base: str, token: str, start: datetime, end: datetime, seeded: Seeded) -> None:
        self.base, self.token, self.start, self.end, self.seeded = base, token, start, end, seeded


@pytest.fixture(scope="module")
def shift(database_url: str) -> Iterator[Shift]:
    _need_browser()
    services = discover_services(None)
    site = load_site()
    start, end = shift_period(datetime.now(UTC), 1.0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        save_site(conn, "pb", site)
        for name in ("positioning", "weight-loading", "traffic-awareness"):
            set_enablement(conn, services, "pb", name, enabled=True)
        seeded = seed_shift(conn, "pb", site, start, 1.0, 6)
        store_alerts(conn, "pb", "positioning", [Alert("markup", MARKUP, at=start.replace(minute=start.minute) +
                                                       (end - start) / 2, machine_id=seeded.machines[0])])
        token = create_token(conn, "playback manager", ["pb"]).token
    base, server = serve_api(database_url, services, ADMIN)
    try:
        yield Shift(base, token, start, end, seeded)
    finally:
        server.should_exit = True


@pytest.fixture(scope="module")
def page(shift: Shift) -> Iterator[Any]:
    sync_playwright = _need_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            browser.close()


def _positions(page: Any) -> dict[str, tuple[float, float]]:
    """Where each machine's marker is on the screen (pixels), as a person sees it."""
    return page.eval_on_selector_all(
        ".playback-machine", "ns => Object.fromEntries(ns.map(n => { const r = n.getBoundingClientRect();"
        " return [n.dataset.machineId, [r.x + r.width / 2, r.y + r.height / 2]]; }))")


def _seek(page: Any, seconds: int) -> None:
    page.locator("#playback-time").evaluate(
        "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', { bubbles: true })); }", seconds)


def _local(at: datetime) -> str:
    return at.astimezone().strftime("%Y-%m-%dT%H:%M")  # the browser runs in this machine's time zone


def test_playback_moves_machines_lists_events_and_answers_the_keyboard(page: Any, shift: Shift) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/v1/sites/pb/playback" in r.url else None)
    page.goto(shift.base + "/")
    page.get_by_label("Access token").fill(shift.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[data-testid=site-map].leaflet-container")
    page.get_by_role("link", name="Playback").click()
    page.select_option("#playback-shift", "custom")
    page.fill("#playback-from", _local(shift.start))
    page.fill("#playback-to", _local(shift.end))
    page.get_by_role("button", name="Load").click()
    page.wait_for_function("() => document.querySelectorAll('.playback-machine').length === 6")

    # the slider moves every machine (each drives a loop; a few stand at a load or dump at any moment)
    _seek(page, 600)
    at_ten = _positions(page)
    clock_ten = page.get_by_test_id("playback-clock").text_content()
    _seek(page, 1500)
    at_25 = _positions(page)
    moved = [m for m in at_ten if abs(at_ten[m][0] - at_25[m][0]) + abs(at_ten[m][1] - at_25[m][1]) > 3]
    assert len(moved) >= 4, f"the slider moved too few machines: {at_ten} -> {at_25}"
    assert page.get_by_test_id("playback-clock").text_content() != clock_ten

    # the events of the moment: a cycle from the API, listed once the slider passes it, its machine highlighted
    answer = httpx.get(f"{shift.base}/api/v1/sites/pb/playback", params={"from": shift.start.isoformat(),
                       "to": shift.end.isoformat()}, headers={"Authorization": f"Bearer {shift.token}"}).json()
    kinds = {e["kind"] for e in answer["events"]}
    assert kinds == {"zone", "cycle", "encounter", "alarm"}, kinds
    cycle = next(e for e in answer["events"] if e["kind"] == "cycle" and 60 < e["t"] < 3000)
    _seek(page, cycle["t"] + 5)
    events = page.get_by_test_id("playback-events")
    assert cycle["text"] in events.text_content()
    machine = cycle["machines"][0]
    assert page.locator(f".playback-machine.highlight[data-machine-id='{machine}']").count() == 1
    assert page.locator("path.event-mark").count() >= 1
    page.screenshot(path=str(FIGURES / "playback.png"))

    # text written by devices and people is shown as text, never parsed as markup
    alarm = next(e for e in answer["events"] if e["text"] == MARKUP)
    _seek(page, alarm["t"] + 1)
    assert MARKUP in events.text_content()
    assert events.locator("img").count() == 0 and page.evaluate("() => window.hacked") is None

    # the keyboard: Space plays and pauses on the slider, L jumps a minute, the button says what it does
    slider = page.locator("#playback-time")
    _seek(page, 0)
    slider.focus()
    page.keyboard.press("l")
    assert slider.input_value() == "60"
    page.select_option("#playback-speed", "60")
    slider.focus()
    page.keyboard.press("Space")
    play = page.locator("button.play")
    assert play.get_attribute("aria-pressed") == "true" and play.text_content() == "Pause"
    page.wait_for_timeout(1500)
    page.keyboard.press("Space")
    assert play.get_attribute("aria-pressed") == "false"
    played = int(slider.input_value())
    assert 60 + 45 <= played <= 60 + 60 * 3, f"1.5 s at 60x should play about 90 s of the shift, played {played - 60}"
    assert slider.get_attribute("aria-valuetext")  # screen readers hear the clock time, not a second count
    assert len(requests) == 1, f"the period should be fetched once, not {requests}"
