"""One API per test module on a real migrated PostgreSQL: three chained test services, two sites, tokens.

``base`` <- ``things`` <- ``top`` depend on each other; ``things`` has settings and a router
with a paginated ``GET /things`` that reads through the request's connection, the way a
real service reads through the SDK (``request.state.sitepulse``), never importing the registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from microservices.sdk import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Outputs, Page, Service, decode_cursor
from registry.api.app import create_app
from registry.tokens import create_token
from sitepulse.settings import load_settings

ADMIN_TOKEN = "bootstrap-admin-token-for-tests-0123456789"
SQUARE = [[18.0, 59.0], [18.002, 59.0], [18.002, 59.001], [18.0, 59.001]]
SITE_YAML = f"""
name: North pit
zones:
  - {{id: load-a, type: load, speed_limit_kmh: 15, polygon: {SQUARE}}}
machines:
  - {{id: H1, kind: hauler, model: A30G, rated_payload_kg: 28000}}
"""
SITE_GEOJSON = json.dumps({
    "type": "FeatureCollection", "name": "South pit",
    "machines": [{"id": "H2", "kind": "hauler", "model": "A40G", "rated_payload_kg": 39000}],
    "features": [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE + [SQUARE[0]]]},
                  "properties": {"id": "dump-a", "type": "dump"}}],
})
THINGS_TOTAL = 250


def sitepulse_request(request: Request) -> Any:
    """What the SDK's one-line dependency would be: the context the host stored for this route."""
    return request.state.sitepulse


class _NoProcessing(Service):
    def process(self, batch: Any, state: dict, settings: BaseModel) -> tuple[Outputs, dict]:
        return Outputs(), state


class Base(_NoProcessing):
    name = "base"
    summary = "Depends on nothing"
    consumes = ("lat", "lon")


class Things(_NoProcessing):
    name = "things"
    version = "1.2.3"
    summary = "Counts things, for route and pagination tests"
    depends_on = ("base",)
    consumes = ("speed_kmh",)
    tables = ("things.counts",)

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        threshold_kmh: float = Field(5.0, gt=0)

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/things")
        def things(
            ctx: Annotated[Any, Depends(sitepulse_request)],
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
            cursor: str | None = None,
        ) -> dict[str, Any]:
            def read(after: tuple[int] | None, count: int) -> list[dict[str, Any]]:
                rows = ctx.conn.execute(
                    "SELECT n FROM generate_series(1, %s) n WHERE n > %s ORDER BY n LIMIT %s",
                    (THINGS_TOTAL, after[0] if after else 0, count),
                ).fetchall()
                return [{"n": n, "site_id": ctx.site_id, "threshold_kmh": ctx.settings.threshold_kmh} for (n,) in rows]

            return Page(limit, decode_cursor(cursor) if cursor else None).fetch(read, n=int)

        return router


class Top(_NoProcessing):
    name = "top"
    summary = "Depends on things"
    depends_on = ("things",)


@dataclass
class Api:
    """A running app and the tokens of the module's callers."""

    app: FastAPI
    client: TestClient
    admin: dict[str, str]
    north: dict[str, str]  # a site token for 'north' only
    both: dict[str, str]  # a site token for 'north' and 'south'
    north_token: str

    def enable(self, site: str, *names: str, enabled: bool = True) -> None:
        """Switch services on (in the given order) or off as admin, asserting success."""
        for name in names:
            response = self.client.put(f"/api/v1/sites/{site}/services/{name}", json={"enabled": enabled},
                                       headers=self.admin)
            assert response.status_code == 200, response.text

    def endpoints(self) -> list[tuple[str, str]]:
        """Every (method, path template) the app documents, service routes included."""
        return [(method.upper(), path) for path, operations in self.app.openapi()["paths"].items()
                for method in operations if method in {"get", "put", "post", "delete", "patch"}]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def api(database_url: str, mqtt_broker: Any) -> Iterator[Api]:
    """The app with the three services, sites 'north' (YAML) and 'south' (GeoJSON) loaded."""
    services: dict[str, Service] = {s.name: s for s in (Base(), Things(), Top())}
    settings = load_settings(admin_token=ADMIN_TOKEN, webhook_approved_hosts="127.0.0.1")  # the tests' receivers
    app = create_app(database_url, mqtt_broker.url, services=services, settings=settings)
    with psycopg.connect(database_url, autocommit=True) as conn:
        north = create_token(conn, "north manager", ["north"]).token
        both = create_token(conn, "regional manager", ["north", "south"]).token
    with TestClient(app) as client:
        admin = bearer(ADMIN_TOKEN)
        for site_id, body, kind in (("north", SITE_YAML, "application/yaml"),
                                    ("south", SITE_GEOJSON, "application/geo+json")):
            response = client.put(f"/api/v1/sites/{site_id}", content=body,
                                  headers={**admin, "Content-Type": kind})
            assert response.status_code == 201, response.text
        yield Api(app, client, admin, bearer(north), bearer(both), north)

