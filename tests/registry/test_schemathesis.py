"""Property-based API tests from the OpenAPI schema (schemathesis): no request may produce a server error.

The app runs once under uvicorn in a thread (its lifespan opens the pool), and every documented
operation gets ``MAX_EXAMPLES`` generated requests with an admin token. Path parameters named
``site_id`` are pinned to the demo site on reads so requests reach the routes' own logic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (a dev dependency)")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from microservices.discovery import discover_services  # noqa: E402
from registry.api.app import create_app  # noqa: E402
from registry.enablement import set_enablement  # noqa: E402
from simulators.site import load_site  # noqa: E402
from sitepulse.settings import load_settings  # noqa: E402
from sitepulse.sites import save_site  # noqa: E402
from tests.conftest import serving  # noqa: E402

pytestmark = pytest.mark.slow

ADMIN = "schemathesis-admin-token-0123456789abcdef01"
MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def live_api(database_url: str, mqtt_broker: Any) -> Iterator[tuple[str, Any]]:
    """The real app with the installed services and the demo site, served on a free port."""
    services = discover_services(None)
    with psycopg.connect(database_url, autocommit=True) as conn:
        save_site(conn, "demo", load_site())
        for name in services:
            set_enablement(conn, services, "demo", name, enabled=True)
    app = create_app(database_url, mqtt_broker.url, services=services, settings=load_settings(admin_token=ADMIN))
    with serving(app) as base:
        yield base, schemathesis.openapi.from_dict(app.openapi())


def test_no_operation_answers_with_a_server_error(live_api: tuple[str, Any]) -> None:
    base, schema = live_api
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            if case.path_parameters and "site_id" in case.path_parameters and case.method.upper() != "PUT":
                case.path_parameters["site_id"] = "demo"
            if case.path.endswith("/stream"):
                case.query = {**(case.query or {}), "max_s": 1}  # an open stream would hold the call for minutes
            response = case.call(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method.upper()} {case.formatted_path} {case.query}: "
                                f"{response.status_code} {response.text[:300]}")

        check()
    assert operations > 30
    assert not failures, "\n".join(dict.fromkeys(failures))
