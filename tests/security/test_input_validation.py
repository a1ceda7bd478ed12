"""Issue 35's low-severity input findings, replayed: each is one clear 422 naming the problem, never a 500."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from fastapi.testclient import TestClient

from microservices.discovery import discover_services
from microservices.sdk import TimeRange, time_range
from registry.api.app import create_app
from registry.api.deps import site_scope
from registry.tokens import Principal, create_token
from sitepulse.errors import InvalidInput, SitePulseError
from sitepulse.settings import load_settings
from sitepulse.sites import check_site_id
from tests.security.conftest import ADMIN_TOKEN, SecureApi, site_yaml

YEAR_ONE = "0001-01-01T00:00:00Z"
YEAR_9999 = "9999-12-31T23:59:59Z"
YAML = {"Content-Type": "application/yaml"}

# every route the probe found answering 500 to a year-1 `to` (traffic-awareness is not loaded in this suite:
# its congestion and recommendations take the same SDK time range, checked by the same app-wide dependency)
TIMED = [
    "/api/v1/sites/north/export/telemetry?to={t}",
    "/api/v1/sites/north/export/weight-loading/cycles?to={t}",
    "/api/v1/sites/north/weight-loading/kpis?to={t}",
    "/api/v1/sites/north/weight-loading/compliance?to={t}",
    "/api/v1/sites/north/weight-loading/cycles?from={t}",
    "/api/v1/usage?to={t}",
    "/api/v1/usage?from={t}",
    "/api/v1/evaluation?as_of={t}",
]


@pytest.fixture(scope="module")
def lenient(secure: SecureApi) -> TestClient:
    """The same running app (its lifespan is the suite's client's), answering a server error as a 500
    instead of raising it into the test."""
    return TestClient(secure.app, raise_server_exceptions=False)


@pytest.mark.parametrize("when", [YEAR_ONE, YEAR_9999, "0001-01-01T00:00:00+14:00"])
@pytest.mark.parametrize("path", TIMED)
def test_a_time_out_of_range_is_one_clear_422(lenient: TestClient, secure: SecureApi, path: str, when: str) -> None:
    response = lenient.get(path.format(t=when.replace("+", "%2B")), headers=secure.admin)
    assert response.status_code == 422, (response.status_code, response.text)
    name = path.split("?")[1].split("=")[0]
    assert response.json()["detail"].startswith(f"query parameter {name!r} must lie between 1970-01-01 and 2200")


def test_times_in_range_still_work(secure: SecureApi) -> None:
    for path in TIMED:
        response = secure.client.get(path.format(t="2026-11-03T00:00:00Z"), headers=secure.admin)
        assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../../../etc/passwd", "/etc/localtime", "Europe/../UTC", ""])
def test_an_unknown_or_path_like_time_zone_is_refused_by_name(lenient: TestClient, secure: SecureApi,
                                                               zone: str) -> None:
    body = site_yaml("TZ", "T1") + f"timezone: '{zone}'\n"
    response = lenient.put("/api/v1/sites/tz-site", content=body, headers={**secure.admin, **YAML})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (f"site file: timezone {zone!r} is not a known IANA time zone, "
                                         "e.g. Europe/Stockholm")
    assert lenient.get("/api/v1/sites/tz-site", headers=secure.admin).status_code == 404  # nothing stored


def test_a_known_time_zone_is_stored(secure: SecureApi) -> None:
    body = site_yaml("TZ", "T1") + "timezone: Europe/Stockholm\n"
    response = secure.client.put("/api/v1/sites/tz-ok", content=body, headers={**secure.admin, **YAML})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("site_id", [".", "..", "..."])
def test_dot_site_ids_are_refused(site_id: str) -> None:
    # HTTP clients normalise /sites/.. away, a raw request (curl --path-as-is, uvicorn) does not: the check is the
    # dependency every site route goes through
    with pytest.raises(InvalidInput, match="is not allowed"):
        site_scope(site_id, Principal("admin", "admin"))


@pytest.mark.parametrize("site_id", [".", "..", "...", "...."])
def test_site_ids_made_only_of_dots_are_refused_where_sites_are_stored(site_id: str) -> None:
    with pytest.raises(SitePulseError, match="is not allowed: it needs a letter, digit, '_' or '-'"):
        check_site_id(site_id)
    assert check_site_id(".a.") == ".a." and check_site_id("north") == "north"


def test_dot_site_ids_are_refused_over_http(lenient: TestClient, secure: SecureApi) -> None:
    response = lenient.put("/api/v1/sites/...", content=site_yaml("Dots", "D1"), headers={**secure.admin, **YAML})
    assert response.status_code == 422 and "is not allowed" in response.json()["detail"], response.text


@pytest.mark.parametrize("field", ["name", "zones[0].name", "paths[0].name", "machines[0].model"])
def test_names_of_unbounded_length_are_refused(lenient: TestClient, secure: SecureApi, field: str) -> None:
    long = "x" * 100_000
    site = {"name": "ok", "zones": [{"id": "z", "type": "load", "name": "zone",
                                     "polygon": [[18.0, 59.0], [18.004, 59.0], [18.004, 59.002]]}],
            "paths": [{"id": "p", "name": "road", "points": [[18.0, 59.0], [18.001, 59.001]]}],
            "machines": [{"id": "M", "kind": "hauler", "model": "A30G"}]}
    target, _, key = field.rpartition(".")
    holder = site if not target else site[target.split("[")[0]][0]
    holder[key or field] = long
    response = lenient.put("/api/v1/sites/long-names", content=json.dumps(site), headers={**secure.admin, **YAML})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"site file: {field} is 100000 characters long; at most 200"


def test_a_token_cannot_be_named_like_the_bootstrap_admin(lenient: TestClient, secure: SecureApi) -> None:
    for name in ("bootstrap-admin", " Bootstrap-Admin "):
        response = lenient.post("/api/v1/tokens", json={"name": name, "role": "admin"}, headers=secure.admin)
        assert response.status_code == 422, response.text
        assert "reserved" in response.json()["detail"]
    with psycopg.connect(secure.url, autocommit=True) as conn, pytest.raises(InvalidInput, match="reserved"):
        create_token(conn, "bootstrap-admin", [], role="admin")  # the CLI path too


@pytest.mark.parametrize("path", ["congestion", "recommendations"])
def test_traffic_routes_refuse_a_year_one_to(secure: SecureApi, mqtt_broker: object, path: str) -> None:
    """The traffic-awareness service routes (not loaded in this suite's app) get the same app-wide check."""
    services = discover_services("positioning,traffic-awareness")
    settings = load_settings(admin_token=ADMIN_TOKEN, load_services="positioning,traffic-awareness",
                             api_rate_per_s=0)
    app = create_app(secure.url, mqtt_broker.url, services=services, settings=settings)  # type: ignore[attr-defined]
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.put("/api/v1/sites/north/services/traffic-awareness", json={"enabled": True},
                          headers=secure.admin).status_code == 200
        response = client.get(f"/api/v1/sites/north/traffic-awareness/{path}?to={YEAR_ONE}", headers=secure.admin)
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("query parameter 'to' must lie between")
        fine = client.get(f"/api/v1/sites/north/traffic-awareness/{path}?to=2026-11-03T00:00:00Z",
                          headers=secure.admin)
        assert fine.status_code == 200, fine.text


@pytest.mark.parametrize(("start", "end", "name"), [
    (datetime(1, 1, 1, tzinfo=UTC), None, "from"),
    (None, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "to"),
    (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), None, "from"),  # past datetime's range in UTC
    (datetime(1969, 12, 31, 23, 59, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "from"),
    (datetime(2026, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC), "to"),
])
def test_the_sdk_time_range_bounds_years_for_direct_callers(start: datetime | None, end: datetime | None,
                                                           name: str) -> None:
    """Services call time_range themselves, outside the API's app-wide check: the same bound, one message."""
    with pytest.raises(SitePulseError, match=rf"^{name} must lie between 1970-01-01 and 2200-01-01, not \d"):
        time_range(start, end)


def test_the_sdk_time_range_keeps_times_in_range() -> None:
    start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime(2199, 12, 31, 21, tzinfo=timezone(timedelta(hours=-2)))
    assert time_range(start, end) == TimeRange(start, datetime(2199, 12, 31, 23, tzinfo=UTC))
    with pytest.raises(SitePulseError, match="must carry a time zone"):
        time_range(datetime(2026, 1, 1), None)
