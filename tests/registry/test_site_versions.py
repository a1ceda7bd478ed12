"""Site versions (issue 33): every upload, drawing and restore is a numbered version with its author and the zones
it changed; zones drawn on the map go through the site file's checks and repair; a stale drawing is refused."""

from __future__ import annotations

from typing import Any

SQUARE = [[18.0, 59.0], [18.002, 59.0], [18.002, 59.001], [18.0, 59.001]]
MOVED = [[18.003, 59.0], [18.005, 59.0], [18.005, 59.001], [18.003, 59.001]]
YAML = f"name: West pit\nzones:\n  - {{id: face, name: Face, type: load, polygon: {SQUARE}}}\n"


def _site(api: Any, site: str = "west") -> None:
    answer = api.client.put(f"/api/v1/sites/{site}", content=YAML,
                            headers={**api.admin, "Content-Type": "application/yaml"})
    assert answer.status_code in (200, 201), answer.text


def _draw(api: Any, zones: list[dict[str, Any]], site: str = "west", **extra: Any) -> Any:
    return api.client.put(f"/api/v1/sites/{site}/zones", json={"zones": zones, **extra}, headers=api.admin)


def test_drawn_zones_make_a_new_version_that_services_read_and_the_old_one_is_kept(api) -> None:
    _site(api)
    before = api.client.get("/api/v1/sites/west", headers=api.admin).json()
    answer = _draw(api, [{"id": "face", "name": "Face", "type": "load", "polygon": MOVED},
                         {"name": "New dump", "kind": "dump", "speed_limit_kmh": 20, "polygon": SQUARE}],
                   base_version=before["version"], note="face moved east")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == before["version"] + 1
    assert body["source"] == "drawing" and body["created_by"] == "bootstrap-admin"
    assert body["changes"] == {"added": ["new-dump"], "changed": ["face"], "removed": []}
    current = api.client.get("/api/v1/sites/west", headers=api.admin).json()
    assert current["version"] == body["version"]
    zones = {z["id"]: z for z in current["config"]["zones"]}
    assert zones["face"]["polygon"] == MOVED and zones["new-dump"]["speed_limit_kmh"] == 20
    assert zones["new-dump"]["type"] == "dump"
    old = api.client.get(f"/api/v1/sites/west/versions/{before['version']}", headers=api.admin).json()
    assert old["config"]["zones"][0]["polygon"] == SQUARE
    listed = api.client.get("/api/v1/sites/west/versions", headers=api.admin).json()["items"]
    assert [v["version"] for v in listed][:2] == [body["version"], before["version"]]
    assert listed[0]["note"] == "face moved east"


def test_restoring_a_version_is_a_new_version_with_the_old_zones(api) -> None:
    _site(api, "restorable")
    first = api.client.get("/api/v1/sites/restorable", headers=api.admin).json()["version"]
    assert _draw(api, [], site="restorable").json()["changes"]["removed"] == ["face"]
    restored = api.client.post(f"/api/v1/sites/restorable/versions/{first}/restore", headers=api.admin)
    assert restored.status_code == 200, restored.text
    assert restored.json()["source"] == "restore" and restored.json()["changes"]["added"] == ["face"]
    assert restored.json()["version"] == first + 2
    now = api.client.get("/api/v1/sites/restorable", headers=api.admin).json()
    assert [z["id"] for z in now["config"]["zones"]] == ["face"]


def test_a_drawing_on_a_stale_version_is_409_and_changes_nothing(api) -> None:
    _site(api, "busy")
    version = api.client.get("/api/v1/sites/busy", headers=api.admin).json()["version"]
    assert _draw(api, [], site="busy", base_version=version).status_code == 200
    stale = _draw(api, [{"name": "Late", "type": "load", "polygon": MOVED}], site="busy", base_version=version)
    assert stale.status_code == 409 and "reload the map" in stale.json()["detail"]
    assert api.client.get("/api/v1/sites/busy", headers=api.admin).json()["config"]["zones"] == []


def test_drawn_zones_get_the_upload_checks_and_repair(api) -> None:
    _site(api, "checked")
    tiny = [[18.0, 59.0], [18.000001, 59.0], [18.000001, 59.000001]]
    refused = _draw(api, [{"name": "Speck", "type": "load", "polygon": tiny}], site="checked")
    assert refused.status_code == 422 and refused.json()["detail"].startswith("drawn zones: ")
    crossed = SQUARE + [[18.0000014, 58.9999993]]
    repaired = _draw(api, [{"name": "North pit", "type": "load", "polygon": crossed}], site="checked")
    assert repaired.status_code == 200, repaired.text
    assert repaired.json()["warnings"][0].startswith("zone 'north-pit' (North pit): polygon crossed itself")
    unknown = _draw(api, [{"name": "X", "type": "quarry", "polygon": SQUARE}], site="checked")
    assert unknown.status_code == 422


def test_only_an_admin_draws_or_restores_and_a_site_token_reads_the_history(api) -> None:
    assert _draw(api, [], site="north").status_code == 200  # the admin
    assert api.client.put("/api/v1/sites/north/zones", json={"zones": []}, headers=api.north).status_code == 403
    assert api.client.post("/api/v1/sites/north/versions/1/restore", headers=api.north).status_code == 403
    history = api.client.get("/api/v1/sites/north/versions", headers=api.north)
    assert history.status_code == 200 and history.json()["items"][0]["source"] == "drawing"
    assert api.client.get("/api/v1/sites/north/versions/999", headers=api.north).status_code == 404
    assert api.client.get("/api/v1/sites/south/versions", headers=api.north).status_code == 404
