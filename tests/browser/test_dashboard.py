"""The dashboard in a real browser against a running stack fed by the simulator.

Real PostgreSQL and Mosquitto (session fixtures), ingest, the service runner and the API as
subprocesses, the simulator publishing the demo quarry at 30x from 45 minutes ago (so cycles
complete within a minute and their times are in the past, where "today" counts them), and
Debian's Chromium driven by Playwright. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from psycopg.types.json import Jsonb

from sitepulse.embedded.ports import free_port
from tests.conftest import stop_processes

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
ADMIN = "browser-admin-token-0123456789abcdef012345"
SPEEDUP = 30
BACKFILL = timedelta(minutes=45)


def _need_browser() -> Any:
    """Playwright's sync API, or a skip (locally) / failure (CI) naming what to install."""
    hint = ("browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install chromium) and the "
            "playwright Python package (pip install playwright; no `playwright install` needed)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(hint, pytrace=False)
        pytest.skip(hint)
    return sync_playwright


@dataclass
class Stack:
    base: str
    manager_token: str
    database_url: str
    mqtt_host: str
    mqtt_port: int
    logs: Path


def _prepare(database_url: str) -> str:
    """The demo quarry as 'demo' with every installed service on, a second site, a token for 'demo' only."""
    from microservices.discovery import discover_services
    from registry.enablement import set_enablement
    from registry.tokens import create_token
    from simulators.site import load_site
    from sitepulse.sites import save_site

    services = discover_services(None)
    with psycopg.connect(database_url, autocommit=True) as conn:
        save_site(conn, "demo", load_site())
        save_site(conn, "other", load_site())
        for name in services:
            set_enablement(conn, services, "demo", name, enabled=True)
        return create_token(conn, "demo site manager", ["demo"]).token


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=handle, stderr=subprocess.STDOUT,
                            cwd=ROOT, start_new_session=True)


@pytest.fixture(scope="module")
def stack(database_url: str, mqtt_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _need_browser()
    token = _prepare(database_url)
    logs = tmp_path_factory.mktemp("stack-logs")
    port = free_port()
    env = {**os.environ, "SITEPULSE_DATABASE_URL": database_url, "SITEPULSE_MQTT_URL": mqtt_broker.url,
           "SITEPULSE_API_PORT": str(port), "SITEPULSE_ADMIN_TOKEN": ADMIN, "SITEPULSE_LOG_LEVEL": "WARNING"}
    start = (datetime.now(UTC) - BACKFILL).replace(microsecond=0)
    processes = [
        _start(["ingest"], env, logs / "ingest.log"),
        _start(["sitepulse", "run-services"], env, logs / "runner.log"),
        _start(["sitepulse", "api"], env, logs / "api.log"),
        _start(["sitepulse", "simulate", "--site-id", "demo", "--speedup", str(SPEEDUP), "--duration", "7200",
                "--mqtt-url", mqtt_broker.url, "--start", start.isoformat().replace("+00:00", "Z")],
               env, logs / "simulator.log"),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            for p, name in zip(processes, ("ingest", "runner", "api", "simulator"), strict=True):
                if p.poll() is not None:
                    pytest.fail(f"{name} exited: {(logs / f'{name}.log').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the API did not come up in 60 s: " + (logs / "api.log").read_text()[-3000:])
            time.sleep(0.3)
        yield Stack(base, token, database_url, mqtt_broker.host, mqtt_broker.port, logs)
    finally:
        stop_processes(processes, 20)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    sync_playwright = _need_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def _login(page: Any, stack: Stack) -> None:
    page.goto(stack.base + "/")
    page.get_by_label("Access token").fill(stack.manager_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[data-testid=site-map].leaflet-container")  # one site: straight to its overview


def _positions(page: Any) -> dict[str, tuple[float, float]]:
    return page.eval_on_selector_all(
        "[data-testid=site-map] .machine",
        "nodes => Object.fromEntries(nodes.map(n => [n.dataset.machineId,"
        " [Number(n.dataset.x), Number(n.dataset.y)]]))")


def _wait_api(stack: Stack, path: str, predicate: Any, timeout: float, what: str) -> Any:
    headers = {"Authorization": f"Bearer {stack.manager_token}"}
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        body = httpx.get(stack.base + path, headers=headers, timeout=10).json()
        if predicate(body):
            return body
        time.sleep(1)
    logs = {p.name: p.read_text()[-1500:] for p in stack.logs.iterdir()}
    pytest.fail(f"{what} within {timeout:.0f} s; last answer {json.dumps(body)[:1500]}; logs {logs}")


def test_map_shows_machines_that_move(page: Any, stack: Stack) -> None:
    _wait_api(stack, "/api/v1/sites/demo/view", lambda v: sum(m["x"] is not None for m in v["machines"]) >= 6,
              45, "machines did not appear in the view")
    _login(page, stack)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=site-map] .machine').length >= 6")
    first = _positions(page)
    page.screenshot(path=str(SHOTS / "overview-1.png"))
    page.wait_for_timeout(4000)  # the live stream pushes positions every ~1.5 s
    second = _positions(page)
    page.screenshot(path=str(SHOTS / "overview-2.png"))
    moved = [m for m in first if m in second and abs(first[m][0] - second[m][0]) + abs(first[m][1] - second[m][1]) > 1]
    assert len(first) >= 6 and moved, f"no machine moved between the screenshots: {first} vs {second}"
    trails = page.eval_on_selector_all("[data-testid=site-map] path.trail",
                                       "ps => ps.map(p => p.getAttribute('d') || '')")
    assert sum(d.count("L") >= 1 for d in trails) >= len(moved), f"moved machines without a trail: {trails}"
    courses = page.eval_on_selector_all("[data-testid=site-map] .machine[data-state=moving]",
                                        "ns => ns.map(n => n.dataset.course)")
    assert courses and all(c != "" and 0 <= float(c) < 360 for c in courses), f"moving, no course: {courses}"
    _assert_labels_apart(page, "site zoom")
    for _ in range(3):  # zoomed out, the zone labels collide: some must give way, none may overlap
        page.locator("[data-testid=site-map] .leaflet-control-zoom-out").click()
        page.wait_for_timeout(400)
    assert page.locator("[data-testid=site-map] .zone-label.label-hidden").count() >= 1, "zoomed out, no label gave way"
    _assert_labels_apart(page, "zoomed out")
    page.screenshot(path=str(SHOTS / "map-zoomed-out.png"))
    page.locator("[data-testid=site-map] .leaflet-control-zoom-in").click()
    page.wait_for_timeout(400)
    machine = next(iter(second))  # machines may stand on top of each other: open the card from the keyboard
    page.locator(f"[data-testid=site-map] .machine[data-machine-id='{machine}']").focus()
    page.keyboard.press("Enter")
    card = page.locator(f"[data-testid=machine-card][data-machine-id='{machine}']")
    card.wait_for()
    assert "Speed" in card.inner_text() and "Payload" in card.inner_text()
    page.screenshot(path=str(SHOTS / "map-machine-card.png"))


def _assert_labels_apart(page: Any, when: str) -> None:
    """The visible map labels (zones and machines) do not overlap each other; at least three zones are named."""
    boxes = page.eval_on_selector_all(
        "[data-testid=site-map] .map-label:not(.label-hidden) span",
        "ns => ns.map(n => { const r = n.getBoundingClientRect();"
        " return [n.textContent, r.left, r.top, r.right, r.bottom]; })")
    zones = page.locator("[data-testid=site-map] .zone-label:not(.label-hidden)").count()
    clashes = [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
               if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]
    assert zones >= 3 and not clashes, f"{when}: {zones} zone labels shown, overlapping: {clashes}"


def test_weight_loading_card_shows_tonnes(page: Any, stack: Stack) -> None:
    def tonnes(view: dict) -> float:
        card = next((c for c in view["cards"] if c["service"] == "weight-loading"), None)
        return next((m["value"] for m in card["metrics"] if m["label"] == "Tonnes today"), 0) if card else 0

    _wait_api(stack, "/api/v1/sites/demo/view", lambda v: tonnes(v) > 0, 120, "no tonnes on the weight-loading card")
    _login(page, stack)
    value = page.locator("article[data-service=weight-loading] .metric[data-label='Tonnes today'] .value")
    value.wait_for()
    assert float(value.inner_text().replace(",", "")) > 0
    page.locator("[data-chart=tonnes-per-hour] svg").wait_for()
    page.locator("[data-testid=cards]").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "weight-loading-card.png"), full_page=True)


def _drive_into_blast_area(stack: Stack) -> None:
    """A machine crossing the blast area (restricted) and out east of it: ingest -> positioning -> an alert,
    then the visit's end, the real path."""
    now = datetime.now(UTC).timestamp()
    lon0, lon1, lat = 18.0952, 18.0995, 59.30359  # the area ends at 18.09806
    samples = [{"ts": now - 150 + i, "seq": i, "lat": lat, "lon": lon0 + (lon1 - lon0) * i / 150,
                "speed_kmh": 8.0, "heading_deg": 90.0, "engine_on": True} for i in range(150)]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="browser-test-intruder")
    client.connect(stack.mqtt_host, stack.mqtt_port)
    client.loop_start()
    info = client.publish("sites/demo/machines/INTRUDER-1/telemetry", json.dumps(samples), qos=1)
    info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def test_alert_appears_and_can_be_acknowledged(page: Any, stack: Stack) -> None:
    _drive_into_blast_area(stack)
    _wait_api(stack, "/api/v1/sites/demo/alerts?open=true",
              lambda body: any(a["machine_id"] == "INTRUDER-1" for a in body["items"]), 90,
              "the restricted-zone entry raised no alert")
    _login(page, stack)
    # the restricted-zone alarm (data quality may also raise one for the intruder's synthetic track)
    alert = page.locator("[data-testid=alerts] li.alert", has_text="INTRUDER-1 entered restricted zone").first
    alert.wait_for()
    alert_id = alert.get_attribute("data-alert-id")
    page.screenshot(path=str(SHOTS / "alert-open.png"))
    alert.get_by_role("textbox").fill("driver called back to the road")
    alert.get_by_role("button", name="Acknowledge").click()
    page.locator(f"[data-testid=alerts] li.alert[data-alert-id='{alert_id}']").wait_for(state="detached")
    page.screenshot(path=str(SHOTS / "alert-acknowledged.png"))
    with psycopg.connect(stack.database_url) as conn:
        acked_by = conn.execute("SELECT acknowledged_by FROM service_alerts WHERE id = %s", (int(alert_id),)).fetchone()
        assert acked_by == ("demo site manager",)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            event = conn.execute("SELECT 1 FROM usage_events WHERE action = 'alert_ack' AND detail ->> 'alert_id' = %s",
                                 (alert_id,)).fetchone()
            if event:
                break
            time.sleep(0.5)
        assert event, "the acknowledgement was not recorded as a usage event"
    # the alarm's condition ended (the intruder drove out of the blast area): cleared by itself, all audited
    cleared = _wait_api(stack, "/api/v1/sites/demo/alerts?state=cleared&machine_id=INTRUDER-1",
                        lambda body: any(str(a["id"]) == alert_id for a in body["items"]), 60,
                        "the restricted-zone alarm did not clear after the machine left")
    assert next(a for a in cleared["items"] if str(a["id"]) == alert_id)["cleared_by"] == "auto-clear"
    page.goto(stack.base + "/#/sites/demo/alarms")
    page.get_by_label("Machine", exact=True).select_option("INTRUDER-1")  # not the map markers ("Machine HX-01: ...")
    page.get_by_role("button", name=f"History of alarm {alert_id}").click()
    history = page.locator(f"[data-testid=alarm-history][data-alert-id='{alert_id}']")
    history.locator("li[data-action=cleared]").wait_for()
    steps = history.locator("ol.timeline li").all_inner_texts()
    by_action = {s.split()[0]: s for s in steps}  # cleared and acknowledged in either order: the machine may
    assert steps[0].startswith("raised") and len(steps) == 3, steps  # leave before anyone acknowledges
    assert "driver called back to the road" in by_action["acknowledged"] and "INTRUDER-1 left" in by_action["cleared"]
    page.screenshot(path=str(SHOTS / "alarm-history.png"), full_page=True)


def test_site_manager_cannot_open_another_site(page: Any, stack: Stack) -> None:
    _login(page, stack)
    page.goto(stack.base + "/#/sites/other")
    page.locator("[data-testid=not-found]").wait_for()
    assert page.locator("[data-testid=site-map]").count() == 0
    page.screenshot(path=str(SHOTS / "other-site-not-found.png"))
    headers = {"Authorization": f"Bearer {stack.manager_token}"}
    assert httpx.get(f"{stack.base}/api/v1/sites/other/view", headers=headers).status_code == 404


def test_an_admin_sees_what_each_decoder_received_and_refused(page: Any, stack: Stack) -> None:
    counters = {"decoder_messages": {"sparkplug-b": 40}, "decoder_rejects": {"sparkplug-b": {"seq-gap": 1}}}
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO ingest_worker_stats (worker_id, host, pid, started_at, counters)"
                     " VALUES ('browser-decoders', 'h', 1, now(), %s::jsonb)", (json.dumps(counters),))
    page.goto(stack.base + "/")
    page.get_by_label("Access token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")
    page.goto(stack.base + "/#/sites/demo/catalogue")
    row = page.locator("[data-testid=decoders] tr", has_text="sparkplug-b")
    row.wait_for()
    assert [c.strip() for c in row.locator("td").all_inner_texts()] == ["sparkplug-b", "40", "1", "seq-gap: 1"]
    page.screenshot(path=str(SHOTS / "decoders.png"))


def test_an_admin_sees_which_site_a_service_fails_on_and_retries_it_now(page: Any, stack: Stack) -> None:
    """A pair failing (as the runner records it, backing off 10 min): the Services page says so with the error;
    "Retry now" makes the live runner step it at once, and it turns ok."""
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        def mark_failing() -> str | None:
            row = conn.execute(
                "UPDATE service_pairs SET status = 'failing', failures = 3, last_error = 'ValueError: demo is wrong',"
                " last_error_at = now(), retry_at = now() + interval '10 minutes' WHERE (service, site_id) = ("
                " SELECT service, site_id FROM service_pairs WHERE site_id = 'demo' AND status = 'ok'"
                " AND (lease_until IS NULL OR lease_until < now()) ORDER BY service LIMIT 1) RETURNING service"
            ).fetchone()
            return row[0] if row else None
        deadline = time.monotonic() + 60
        while (service := mark_failing()) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert service is not None, "the runner never ran a service on demo"
        page.goto(stack.base + "/")
        page.get_by_label("Access token").fill(ADMIN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state("networkidle")
        page.goto(stack.base + "/#/sites/demo/catalogue")
        # the service's own row (traffic-awareness's row names positioning too, as a dependency)
        row = page.locator("table.catalogue tr").filter(has=page.get_by_role("link", name=service, exact=True))
        cell = row.locator("td.failing")
        cell.wait_for()
        assert "failing (3 attempts)" in cell.inner_text() and "ValueError: demo is wrong" in cell.inner_text()
        page.screenshot(path=str(SHOTS / "service-failing-on-a-site.png"))
        cell.get_by_role("button", name="Retry now").click()
        status_sql = "SELECT status FROM service_pairs WHERE service = %s AND site_id = 'demo'"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and conn.execute(status_sql, (service,)).fetchone()[0] != "ok":
            time.sleep(0.2)
        page.reload()
        row.wait_for()
        healthy = row.locator("td[data-runner]").inner_text()
        assert healthy.startswith("ok · processed up to ") and healthy.endswith(" rows)")  # how far it got, too


def test_a_site_manager_raises_votes_and_comments_a_need_on_the_lifecycle_page(page: Any, stack: Stack) -> None:
    _login(page, stack)
    page.goto(stack.base + "/#/sites/demo/lifecycle")
    page.get_by_label("What does the site need?").fill("See which loads leave above 110 %")
    page.get_by_label("Value (1-10)").fill("9")
    page.get_by_label("Effort (1-10)").fill("3")
    page.get_by_role("button", name="Add need").click()
    card = page.locator("[data-column=needs] li.need", has_text="See which loads leave above 110 %")
    card.wait_for()
    card.get_by_role("button", name="Vote for: See which loads leave above 110 %").click()
    card = page.locator("[data-column=needs] li.need", has_text="See which loads leave above 110 %")
    card.locator("button.vote[aria-pressed=true]").wait_for()
    assert card.locator("button.vote").inner_text().strip() == "▲ 1"
    card.get_by_role("button", name="0 comments").click()
    card.get_by_label("Comment on: See which loads leave above 110 %").fill("the night shift asks for it too")
    card.get_by_role("button", name="Comment", exact=True).click()
    card = page.locator("[data-column=needs] li.need", has_text="See which loads leave above 110 %")
    card.locator(".comments li", has_text="the night shift asks for it too").wait_for()
    assert "raised by demo site manager" in card.inner_text()
    page.screenshot(path=str(SHOTS / "lifecycle-need.png"), full_page=True)
    with psycopg.connect(stack.database_url) as conn:
        actions = [a for (a,) in conn.execute(
            "SELECT c.action FROM need_changes c JOIN needs n ON n.id = c.need_id"
            " WHERE n.text = 'See which loads leave above 110 %' ORDER BY c.at, c.id")]
    assert actions == ["raised", "voted", "commented"]


# Every element that is a card on screen: its content must fit in it, or scroll inside it.
_OVERFLOW_JS = """() => {
  const doc = document.documentElement;
  const out = [];
  const name = (el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${[...el.classList].join('.')}` +
    (el.dataset.service ? `[${el.dataset.service}]` : '');
  if (doc.scrollWidth > doc.clientWidth + 1) out.push(`page is ${doc.scrollWidth} px wide in ${doc.clientWidth}`);
  const boxes = 'main, header, section, .card, .map-panel, .alerts-panel, figure, .table-wrap, form';
  for (const el of document.querySelectorAll(boxes)) {
    const clips = /(auto|scroll|hidden|clip)/.test(getComputedStyle(el).overflowX);
    if (!clips && el.scrollWidth > el.clientWidth + 1)
      out.push(`${name(el)}: content ${el.scrollWidth} px in ${el.clientWidth}`);
    const r = el.getBoundingClientRect();
    if (r.width && r.right > doc.clientWidth + 1)
      out.push(`${name(el)}: right edge ${Math.round(r.right)} beyond ${doc.clientWidth}`);
  }
  return out;
}"""


def _site_pages(stack: Stack) -> list[tuple[str, str, str]]:
    """(hash, text that says the page is drawn, screenshot name) for every page of the demo site."""
    headers = {"Authorization": f"Bearer {stack.manager_token}"}
    services = httpx.get(f"{stack.base}/api/v1/services?limit=1000", headers=headers, timeout=10).json()["items"]
    pages = [("#/sites/demo", "Services on this site", "overview"),
             ("#/sites/demo/catalogue", "Installed services", "catalogue"),
             ("#/sites/demo/alarms", "Who is told", "alarms"),
             ("#/sites/demo/evaluation", "Evaluation", "evaluation"),
             ("#/sites/demo/lifecycle", "Raise a need", "lifecycle"),
             ("#/sites/demo/data", "Access log", "data")]
    details = {"weight-loading": "Latest haul cycles", "positioning": "Zone events",
               "traffic-awareness": "Proximity events"}
    return pages + [(f"#/sites/demo/services/{s['name']}", details.get(s["name"], s["summary"][:30]),
                     f"service-{s['name']}") for s in services]


def test_every_page_fits_at_desktop_and_phone_width(browser: Any, stack: Stack) -> None:
    _wait_api(stack, "/api/v1/sites/demo/view", lambda v: sum(m["x"] is not None for m in v["machines"]) >= 6,
              45, "machines did not appear in the view")
    pages = _site_pages(stack)
    problems: dict[str, list[str]] = {}
    for width, height in ((1280, 800), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        try:
            _login(page, stack)
            for hash_, text, name in pages:
                page.goto(stack.base + "/" + hash_)
                page.get_by_text(text).first.wait_for()
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(300)  # the map fits the site once laid out
                shown = [t for t in page.locator("p.error").all_inner_texts() if t.strip()]
                found = page.evaluate(_OVERFLOW_JS) + [f"error shown: {t}" for t in shown] + \
                    [f"console: {e}" for e in errors]
                errors.clear()
                if found:
                    problems[f"{name} @ {width}px"] = found
                page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        finally:
            context.close()
    assert not problems, json.dumps(problems, indent=1)[:4000]


def test_the_evaluation_page_shows_a_trial_on_history_as_text(page: Any, stack: Stack) -> None:
    """A trial's findings beside what the site had; an alert message a device shaped is shown, never run."""
    hostile = '<img src=x onerror="window.__pwned = 1">'
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        trial_id = conn.execute(
            "INSERT INTO service_trials (site_id, service, period_from, period_to, status, requested_by, samples,"
            " found, alerts, examples, kpis, finished_at) VALUES ('demo', 'weight-loading', now() - interval '2 days',"
            " now() - interval '1 day', 'done', 'provider', 7200, %s, %s, %s, %s, now()) RETURNING id",
            (Jsonb({"weight_loading.cycles": 41}), Jsonb({"critical": 2}),
             Jsonb([{"at": None, "level": "critical", "machine_id": "HX-01", "message": hostile}]),
             Jsonb([{"name": "overload_share", "unit": "fraction", "trial_mean": 0.12, "site_mean": None}]))
        ).fetchone()[0]
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _login(page, stack)
    page.goto(stack.base + "/#/sites/demo/evaluation")
    card = page.locator(f"[data-trial-id='{trial_id}']")
    card.wait_for()
    assert card.locator("[data-testid=trial-status]").inner_text() == "done"
    assert "weight_loading.cycles" in card.inner_text() and "41" in card.inner_text()
    assert "2 critical" in card.inner_text() and "overload_share" in card.inner_text()
    card.locator("summary").click()
    assert hostile in card.inner_text()
    assert card.locator("img").count() == 0 and page.evaluate("window.__pwned === undefined") and not dialogs
