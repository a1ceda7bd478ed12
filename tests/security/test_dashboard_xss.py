"""Every user-writable text the dashboard shows is rendered as text, never as markup (issue 35, HIGH finding).

A site whose every free-text field is a script payload -- site name, zone and haul-road names, machine models,
alarm messages, alarm-rule names and recipients, needs and their comments, acknowledgement comments, the
token's own name -- is loaded into a running API, and Debian's Chromium visits every dashboard page, hovers
every zone and road (their tooltips were the stored XSS: Leaflet parses a string tooltip as HTML) and opens
every machine card. Each field gets every payload shape in turn (the property: no shape in no field runs).

Passing needs three things at once, so the Content-Security-Policy cannot hide a rendering bug: no payload ran
(``window.__pwned`` stays empty), no payload became markup (no element carries an ``on*`` attribute, a
``javascript:`` URL, or is a ``script``/``iframe`` the app did not ship), and no CSP violation was reported
(the dashboard itself needs nothing the policy forbids). The payload texts are also found, verbatim, as text.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from ingest.contract import Decoded, Decoder
from ingest.writer import TelemetryWriter
from microservices.alerts import store_alerts
from microservices.sdk import Alert
from registry.tokens import create_token
from sitepulse.embedded.ports import free_port
from tests.browser.test_dashboard import CHROMIUM, _need_browser, _start
from tests.conftest import stop_processes

ADMIN = "xss-suite-admin-token-0123456789abcdef0123"
SITE = "hostile"

# Each shape would run script if parsed as HTML; "{f}" names the field, so a failure says which one leaked.
SHAPES = (
    "<img src=x onerror=\"window.__pwned.push('{f}')\">",
    "<svg onload=\"window.__pwned.push('{f}')\"></svg>",
    "\"'><script>window.__pwned.push('{f}')</script>",
    "<iframe srcdoc=\"<script>parent.__pwned.push('{f}')</script>\"></iframe>",
    "<details open ontoggle=\"window.__pwned.push('{f}')\">x</details>",
    "<a href=\"javascript:window.__pwned.push('{f}')\">{f}</a>",
)
N = len(SHAPES)


def payload(field: str, shape: int) -> str:
    return SHAPES[shape % N].replace("{f}", f"{field}-{shape}")


def _square(i: int) -> list[list[float]]:
    lon = 18.0 + 0.003 * i
    return [[lon, 59.0], [lon + 0.002, 59.0], [lon + 0.002, 59.002], [lon, 59.002]]


def hostile_site() -> dict[str, Any]:
    """Every free-text field of a site file, each zone/road/machine with another payload shape."""
    return {
        "name": payload("site-name", 0),
        "zones": [{"id": f"z{i}", "type": "load" if i % 2 else "dump", "name": payload("zone-name", i),
                   "speed_limit_kmh": 20, "polygon": _square(i)} for i in range(N)],
        "paths": [{"id": f"r{i}", "name": payload("road-name", i),
                   "points": [[18.0 + 0.003 * i, 59.0025], [18.002 + 0.003 * i, 59.0025]]} for i in range(N)],
        "machines": [{"id": f"M{i}", "kind": "hauler", "model": payload("machine-model", i),
                      "rated_payload_kg": 28000} for i in range(N)],
    }


def _telemetry(url: str) -> None:
    """A few minutes of positions for every machine, each inside its own zone, ending now."""
    decoder, out = Decoder(), Decoded()
    start = datetime.now(UTC).timestamp() - 180
    for i in range(N):
        for k in range(180):
            sample = {"ts": start + k, "seq": k, "lat": 59.001, "lon": 18.001 + 0.003 * i + k * 1e-6,
                      "speed_kmh": 5.0, "payload_kg": 1000.0, "engine_on": True}
            decoder.decode_into(out, f"sites/{SITE}/machines/M{i}/telemetry", orjson.dumps(sample), datetime.now(UTC))
    with TelemetryWriter(url) as writer:
        writer.write(out)


@dataclass
class HostileStack:
    base: str
    hostile_token: str  # a site token whose own name is a payload


def _fill(base: str, database_url: str) -> str:
    """The hostile site, its telemetry, alarms, rules, needs and comments; returns a token named by a payload."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=base, headers=admin, timeout=30) as api:
        response = api.put(f"/api/v1/sites/{SITE}", content=json.dumps(hostile_site()),
                           headers={"Content-Type": "application/yaml"})
        assert response.status_code == 201, response.text
        for name in ("positioning", "weight-loading"):
            assert api.put(f"/api/v1/sites/{SITE}/services/{name}", json={"enabled": True}).status_code == 200
        for i in range(N):
            rule = {"name": payload("rule-name", i)[:100], "min_level": "info", "notify": payload("rule-notify", i),
                    "escalate_after_s": 3600, "escalate_to": payload("rule-escalate", i)}
            assert api.post(f"/api/v1/sites/{SITE}/alarm-rules", json=rule).status_code == 201
            need = api.post(f"/api/v1/sites/{SITE}/needs", json={"text": payload("need-text", i), "value_score": 5,
                                                                  "effort": 3})
            assert need.status_code == 201, need.text
            comment = api.post(f"/api/v1/sites/{SITE}/needs/{need.json()['id']}/comments",
                               json={"text": payload("need-comment", i)})
            assert comment.status_code == 201, comment.text
    _telemetry(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        store_alerts(conn, SITE, "positioning", [
            Alert(key=f"x-{i}", level="warning", message=payload("alert-message", i),
                  at=datetime.now(UTC) - timedelta(minutes=1), machine_id=f"M{i}") for i in range(N)])
        ids = [row[0] for row in conn.execute("SELECT id FROM service_alerts WHERE site_id = %s ORDER BY id", (SITE,))]
        token = create_token(conn, payload("token-name", 0), [SITE]).token
    with httpx.Client(base_url=base, headers=admin, timeout=30) as api:
        for i, alert_id in enumerate(ids[: N // 2]):
            response = api.post(f"/api/v1/sites/{SITE}/alerts/{alert_id}/ack", json={"comment": payload("ack", i)})
            assert response.status_code == 200, response.text
    return token


@pytest.fixture(scope="module")
def hostile(database_url: str, mqtt_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileStack]:
    _need_browser()
    logs: Path = tmp_path_factory.mktemp("xss-logs")
    port = free_port()
    env = {**os.environ, "SITEPULSE_DATABASE_URL": database_url, "SITEPULSE_MQTT_URL": mqtt_broker.url,
           "SITEPULSE_API_PORT": str(port), "SITEPULSE_ADMIN_TOKEN": ADMIN, "SITEPULSE_LOG_LEVEL": "WARNING",
           "SITEPULSE_LOAD_SERVICES": "positioning,weight-loading", "SITEPULSE_API_RATE_PER_S": "0"}
    api = _start(["sitepulse", "api"], env, logs / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if api.poll() is not None:
                pytest.fail("the API exited: " + (logs / "api.log").read_text()[-3000:])
            time.sleep(0.3)
        else:
            pytest.fail("the API did not come up: " + (logs / "api.log").read_text()[-3000:])
        yield HostileStack(base, _fill(base, database_url))
    finally:
        stop_processes([api], 20)


# Installed before any page script: the sink every payload calls, and a record of every CSP violation.
WATCH = """
window.__pwned = [];
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${(e.sample || '').slice(0, 60)}`));
"""

# Markup that could only come from a payload: the app builds every element with createElement and sets
# listeners with addEventListener, never an on* attribute; it ships exactly one script and no iframe.
MARKUP = """
() => [...document.querySelectorAll('*')].flatMap((el) => {
  const bad = [...el.attributes].filter((a) => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value))
    .map((a) => `${el.tagName.toLowerCase()}[${a.name}]`);
  const foreign = el.tagName === 'IFRAME' || (el.tagName === 'SCRIPT' && !el.src.endsWith('/static/app.js'));
  if (foreign) bad.push(el.outerHTML.slice(0, 80));
  return bad;
})
"""


@pytest.fixture(scope="module")
def chromium(hostile: HostileStack) -> Iterator[Any]:
    sync_playwright = _need_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()


def _browser_page(chromium: Any, token: str | None = None) -> Any:
    """A fresh tab watching for payloads; with ``token``, already signed in (the token in sessionStorage)."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(WATCH)
    if token:
        context.add_init_script(f"sessionStorage.setItem('sitepulse.token', {json.dumps(token)})")
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("dialog", lambda dialog: (dialog.dismiss(), pytest.fail(f"a dialog opened: {dialog.message}")))
    return page


def _assert_inert(page: Any, where: str) -> None:
    page.wait_for_timeout(300)  # an onerror of a broken image fires asynchronously
    ran = page.evaluate("window.__pwned")
    markup = page.evaluate(MARKUP)
    violations = page.evaluate("window.__csp")
    assert not ran, f"{where}: payloads ran: {ran}"
    assert not markup, f"{where}: user text became markup: {markup[:10]}"
    assert not violations, f"{where}: Content-Security-Policy violations: {violations[:10]}"


def _tooltip_after_hover(page: Any, locator: Any) -> str:
    """Hover near the shape's top-left corner (machines stand in the middle of their zones) and read its tooltip."""
    box = locator.bounding_box()
    page.mouse.move(0, 0)
    page.mouse.move(box["x"] + min(6, box["width"] / 2), box["y"] + min(6, box["height"] / 2), steps=3)
    tooltip = page.locator(".leaflet-tooltip").last
    tooltip.wait_for(state="visible")
    return tooltip.inner_text()


def test_every_hostile_text_on_the_map_is_shown_as_text(chromium: Any, hostile: HostileStack) -> None:
    page = _browser_page(chromium)
    page.goto(hostile.base + "/")
    page.get_by_label("Access token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    page.locator(".site-list a").first.wait_for()
    assert page.locator(".site-list a").first.inner_text() == payload("site-name", 0)
    _assert_inert(page, "sites list")
    page.goto(f"{hostile.base}/#/sites/{SITE}")
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=site-map] .machine').length >= {N}")
    _assert_inert(page, "overview")
    zones, roads = page.locator("[data-testid=site-map] path.zone"), page.locator("[data-testid=site-map] path.road")
    assert zones.count() == N and roads.count() == N
    shown_zones = {_tooltip_after_hover(page, zones.nth(i)) for i in range(N)}
    shown_roads = {_tooltip_after_hover(page, roads.nth(i)) for i in range(N)}
    _assert_inert(page, "zone and road tooltips")
    for i in range(N):
        assert any(t.startswith(payload("zone-name", i)) for t in shown_zones), (i, shown_zones)
        assert payload("road-name", i) in shown_roads, (i, shown_roads)
    labels = page.eval_on_selector_all("[data-testid=site-map] .zone-label span", "ns => ns.map(n => n.textContent)")
    assert sorted(labels) == sorted(payload("zone-name", i) for i in range(N))
    for i in range(N):
        page.locator(f"[data-testid=site-map] .machine[data-machine-id='M{i}']").focus()
        page.keyboard.press("Enter")
        card = page.locator(f"[data-testid=machine-card][data-machine-id='M{i}']")
        card.wait_for()
        assert payload("machine-model", i) in card.inner_text()
    _assert_inert(page, "machine cards")
    page.context.close()


@pytest.mark.parametrize("route", ["", "/catalogue", "/alarms", "/evaluation", "/lifecycle", "/data",
                                   "/services/positioning", "/services/weight-loading"])
def test_every_page_renders_hostile_text_inertly(chromium: Any, hostile: HostileStack, route: str) -> None:
    for token in (ADMIN, hostile.hostile_token):
        page = _browser_page(chromium, token)
        page.goto(f"{hostile.base}/#/sites/{SITE}{route}")
        page.locator("#who span").wait_for()
        page.wait_for_function("() => !document.querySelector('#main .loading')")
        page.wait_for_timeout(500)
        if route == "/lifecycle":  # open every need's comments
            for button in page.get_by_role("button", name=re.compile(r"^\d+ comments?$")).all():
                button.click()
            page.locator("ol.comments li").first.wait_for()
            assert payload("need-comment", 0) in page.inner_text("#main")
        if route == "/alarms":
            assert payload("rule-notify", 1) in page.inner_text("#main")
        _assert_inert(page, f"{route or '/'} as {'admin' if token == ADMIN else 'site token'}")
        if token != ADMIN:
            assert page.inner_text("#who span").startswith(payload("token-name", 0))
        page.context.close()
