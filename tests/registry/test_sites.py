"""Sites: load from YAML or GeoJSON, read back what a token may see, and bad files refused with the reason."""

from __future__ import annotations

import json

import pytest

SQUARE = [[18.0, 59.0], [18.002, 59.0], [18.002, 59.001], [18.0, 59.001]]
YAML = f"name: East pit\nzones:\n  - {{id: z1, type: load, polygon: {SQUARE}}}\n"


def _put(api, site: str, body: str, kind: str = "application/yaml"):
    return api.client.put(f"/api/v1/sites/{site}", content=body, headers={**api.admin, "Content-Type": kind})


def test_yaml_site_is_created_then_replaced(api) -> None:
    created = _put(api, "east", YAML)
    assert created.status_code == 201
    assert created.json() | {"updated_at": None} == {
        "site_id": "east", "name": "East pit", "zones": 1, "machines": 0, "updated_at": None, "created": True,
        "version": 1, "warnings": []}
    replaced = _put(api, "east", YAML.replace("East pit", "East pit (v2)"), "text/yaml; charset=utf-8")
    assert replaced.status_code == 200
    assert replaced.json()["created"] is False
    got = api.client.get("/api/v1/sites/east", headers=api.admin).json()
    assert got["name"] == "East pit (v2)"
    assert got["config"]["zones"][0]["id"] == "z1"


# an outline whose closing corner was surveyed 8 cm past its first edge (crossing itself): repaired, not refused
CROSSED_YAML = ("name: Quarry\nzones: [{id: north-pit, name: North pit, type: load, polygon: [[18.0, 59.0], "
                "[18.002, 59.0], [18.002, 59.001], [18.0, 59.001], [18.0000014, 58.9999993]]}]\n")


def test_a_repaired_drawing_is_stored_and_the_answer_says_what_was_repaired(api) -> None:
    answer = _put(api, "crossed", CROSSED_YAML)
    assert answer.status_code == 201, answer.text
    (warning,) = answer.json()["warnings"]
    assert warning.startswith("zone 'north-pit' (North pit): polygon crossed itself near corner 5 of 5")
    assert _put(api, "east", YAML).json()["warnings"] == []


def test_geojson_site_is_stored_with_its_machines(api) -> None:
    got = api.client.get("/api/v1/sites/south", headers=api.both)
    assert got.status_code == 200
    body = got.json()
    assert body["name"] == "South pit"
    assert body["config"]["machines"][0]["id"] == "H2"
    assert body["config"]["zones"][0]["type"] == "dump"


@pytest.mark.parametrize(("body", "reason"), [
    ("zones: [{id: z, type: quarry, polygon: []}]", "site file: zones.0.type"),
    ("name: [unclosed", "site file: not valid YAML or JSON"),
    ("- a\n- list", "site file: expected a mapping or a GeoJSON FeatureCollection"),
    (json.dumps({"type": "FeatureCollection", "features": [{"geometry": {"type": "Point"}}]}),
     "site file: feature 0: unsupported geometry 'Point'"),
])
def test_bad_site_file_is_422_with_the_parsers_reason(api, body: str, reason: str) -> None:
    response = _put(api, "bad", body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(reason)
    assert api.client.get("/api/v1/sites/bad", headers=api.admin).status_code == 404


def test_wrong_content_type_and_empty_body_are_refused(api) -> None:
    wrong = _put(api, "bad", YAML, "text/plain")
    assert wrong.status_code == 415
    assert "application/yaml" in wrong.json()["detail"]
    empty = _put(api, "bad", "")
    assert empty.status_code == 422
    assert empty.json() == {"detail": "the body is empty; send the site file"}


def test_invalid_site_id_is_400(api) -> None:
    response = _put(api, "bad%20id", YAML)
    assert response.status_code == 400
    assert "must be 1-64 characters" in response.json()["detail"]


def test_site_list_paginates(api) -> None:
    _put(api, "west", YAML)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/api/v1/sites", params=params, headers=api.admin).json()
        seen += [s["site_id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert {"north", "south", "west"} <= set(seen)
    assert len(seen) == len(set(seen))


SITEFILES = __import__("pathlib").Path(__file__).parents[1] / "kernel" / "sitefiles"


@pytest.mark.parametrize(("name", "kind"), [("qgis_sweref99.geojson", "application/geo+json"),
                                            ("geojson_io.geojson", "application/geo+json"),
                                            ("google_earth.kml", "application/vnd.google-earth.kml+xml")])
def test_drawn_site_files_load_and_a_bad_one_changes_nothing(api, name: str, kind: str) -> None:
    site = f"drawn-{name.split('.')[0].replace('_', '-')}"
    assert _put(api, site, (SITEFILES / name).read_text(), kind).status_code == 201
    before = api.client.get(f"/api/v1/sites/{site}", headers=api.admin).json()
    assert [(z["id"], z["name"], z["kind"]) for z in before["config"]["zones"]][:2] == [
        ("north-pit", "North pit", "load"), ("crusher", "Crusher", "crusher")]
    doc = json.loads((SITEFILES / "geojson_io.geojson").read_text())
    doc["features"][1]["properties"]["name"] = "North pit"  # a duplicate name ...
    doc["features"][2]["properties"]["kind"] = "quarry"  # ... and an unknown kind: two lines
    refused = _put(api, site, json.dumps(doc), "application/geo+json")
    assert refused.status_code == 422
    lines = refused.json()["detail"].split("\n")
    assert len(lines) == 2
    assert lines[0].startswith("site file: feature 2 'Haul road A': unknown kind 'quarry'; kinds accepted: load")
    assert lines[1].startswith("site file: feature 1 'North pit': name 'North pit' is used again")
    assert api.client.get(f"/api/v1/sites/{site}", headers=api.admin).json() == before
