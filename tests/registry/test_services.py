"""The catalogue: each service's declaration, runner health, and its switch on the sites the caller sees."""

from __future__ import annotations

import psycopg


def test_catalogue_describes_every_service(api) -> None:
    response = api.client.get("/api/v1/services", headers=api.north)
    assert response.status_code == 200
    items = {s["name"]: s for s in response.json()["items"]}
    assert set(items) == {"base", "things", "top"}
    things = items["things"]
    assert things["version"] == "1.2.3"
    assert things["depends_on"] == ["base"]
    assert things["consumes"] == ["speed_kmh"]
    assert things["tables"] == ["things.counts"]
    assert things["settings"]["properties"]["threshold_kmh"]["default"] == 5.0
    assert {"summary", "author", "kpis", "sites", "health"} <= set(things)


def test_catalogue_shows_stages_only_for_visible_sites(api) -> None:
    api.enable("north", "base")
    api.enable("south", "base")
    def sites(headers: dict[str, str]) -> list[str]:
        items = api.client.get("/api/v1/services", headers=headers).json()["items"]
        return [s["site_id"] for s in next(i for i in items if i["name"] == "base")["sites"]]
    assert sites(api.north) == ["north"]
    assert sites(api.admin) == ["north", "south"]


def test_catalogue_shows_runner_health_errors_to_admins_only(api, db: psycopg.Connection) -> None:
    db.execute("INSERT INTO service_health (service, status, failures, last_error, last_error_at)"
               " VALUES ('things', 'failing', 3, 'boom at site south', now())")
    def health(headers: dict[str, str]) -> dict:
        items = api.client.get("/api/v1/services", headers=headers).json()["items"]
        return next(i for i in items if i["name"] == "things")["health"]
    assert health(api.admin)["last_error"] == "boom at site south"
    assert health(api.north)["status"] == "failing"
    assert "last_error" not in health(api.north)
