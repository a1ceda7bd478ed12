"""The reports page in a real browser (Debian's Chromium through Playwright) against the real API on PostgreSQL with
the built-in services' results: a failed delivery is shown loudly, an admin adds a schedule (and hears why a bad
one is refused), anyone who may see the site downloads a past period's PDF, and a site manager cannot schedule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from registry.api.app import create_app
from registry.shift_reports.periods import Period
from registry.shift_reports.scheduler import ReportScheduler
from registry.shift_reports.schedules import ScheduleIn, create_schedule, delete_schedule
from registry.tokens import create_token
from sitepulse.embedded.ports import free_port
from sitepulse.settings import load_settings
from tests.browser.test_dashboard import CHROMIUM, SHOTS, _need_browser
from tests.conftest import serving
from tests.registry.shift_report_fixtures import SITE, ProcessedSite, builtin_services, shared_site  # noqa: F401

pytestmark = pytest.mark.slow  # real processes or a browser: the parallel long step (make test)

ADMIN = "report-settings-admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def served(shared_site: ProcessedSite, mqtt_broker: Any) -> Iterator[tuple[str, str, ProcessedSite]]:  # noqa: F811
    """The API on a free port over the shared processed site, one failed delivery logged, a site manager's token."""
    _need_browser()
    site, database_url = shared_site, shared_site.database_url
    with psycopg.connect(database_url, autocommit=True) as conn:
        manager = create_token(conn, "pit manager", [SITE]).token
        schedule = create_schedule(conn, SITE, ScheduleIn(name="Night report", trigger="shift_end",
                                                          emails=["office@pit.example"]), "test")
        dead_smtp = load_settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_tls="none",
                                  reports_retry_wait_s=0.01)
        scheduler = ReportScheduler(database_url, builtin_services(), dead_smtp)
        scheduler.deliver(conn, schedule, Period(site.end, site.start, "night shift of yesterday"))
        delete_schedule(conn, SITE, schedule.id)
    app = create_app(database_url, mqtt_broker.url, services=builtin_services(),
                     settings=load_settings(admin_token=ADMIN, reports_poll_s=3600))
    with serving(app) as base:
        yield base, manager, site


@pytest.fixture
def page(served: tuple[str, str, ProcessedSite]) -> Iterator[Any]:
    sync_playwright = _need_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True,
                                      timezone_id="UTC")
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def _open_reports(page: Any, base: str, token: str) -> None:
    """Signed in with ``token`` (kept in the tab's sessionStorage, as the login form does), on the reports page."""
    page.goto(base + "/")
    page.evaluate("token => sessionStorage.setItem('sitepulse.token', token)", token)
    page.goto(f"{base}/#/sites/{SITE}/reports")
    page.wait_for_selector("[data-testid=report-deliveries] h2")


def test_an_admin_sees_the_failed_delivery_and_adds_a_daily_schedule(page: Any, served: Any) -> None:
    base, _, site = served
    _open_reports(page, base, ADMIN)
    alert = page.locator("[data-testid=failed-deliveries]")
    assert "office@pit.example" in alert.inner_text() and "failed" in alert.inner_text()
    failed_rows = page.locator("[data-testid=report-deliveries] tr[data-status=failed]")
    assert failed_rows.filter(has_text="office@pit.example").count() == 1

    page.get_by_label("Name", exact=True).fill("Daily production to the office")
    page.get_by_label("Send", exact=True).select_option("daily")
    page.get_by_label("Local time (daily)").fill("18:00")
    page.get_by_label("E-mail to (comma-separated)").fill("office@pit.example, not-an-address")
    page.get_by_role("button", name="Add schedule").click()
    refusal = page.locator("[data-testid=schedule-status]")
    refusal.filter(has_text="not an e-mail address").wait_for()
    assert "'not-an-address'" in refusal.inner_text()

    page.get_by_label("E-mail to (comma-separated)").fill("office@pit.example, manager@pit.example")
    page.get_by_label("Excel (XLSX)").check()
    page.get_by_role("button", name="Add schedule").click()
    row = page.locator("[data-testid=report-schedules] tbody tr")
    row.filter(has_text="daily at 18:00 (site time)").wait_for()
    page.screenshot(path=str(SHOTS / "report-settings.png"), full_page=True)
    with psycopg.connect(site.database_url) as conn:
        stored = conn.execute("SELECT trigger, daily_at::text, emails, formats FROM report_schedules WHERE site_id"
                              " = %s", (SITE,)).fetchall()
    assert stored == [("daily", "18:00:00", ["office@pit.example", "manager@pit.example"], ["pdf", "xlsx"])]
    page.get_by_role("button", name="Remove schedule Daily production to the office").click()
    page.get_by_text("No schedules yet").wait_for()


def test_a_site_manager_downloads_a_past_period_but_cannot_schedule(page: Any, served: Any, tmp_path: Any) -> None:
    base, manager, site = served
    _open_reports(page, base, manager)
    assert page.get_by_role("button", name="Add schedule").count() == 0
    assert page.locator("[data-testid=failed-deliveries]").count() == 1  # failures are shown to the site's people
    stamp = lambda t: t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")  # noqa: E731 (the browser runs in UTC)
    page.get_by_label("From", exact=True).fill(stamp(site.start - timedelta(minutes=1)))
    page.get_by_label("To", exact=True).fill(stamp(site.end + timedelta(minutes=1)))
    with page.expect_download() as info:
        page.get_by_role("button", name="Download report").click()
    path = tmp_path / "report.pdf"
    info.value.save_as(path)
    assert path.read_bytes().startswith(b"%PDF") and path.stat().st_size > 10_000
    page.get_by_text("Report downloaded.").wait_for()
    assert datetime.now(UTC) > site.end  # a past period
