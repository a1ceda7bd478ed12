"""Enablement per site: dependencies enforced both ways, settings validated, stage and times kept."""

from __future__ import annotations


def _switch(api, site: str, name: str, **body):
    return api.client.put(f"/api/v1/sites/{site}/services/{name}", json=body, headers=api.admin)


def test_enabling_needs_dependencies_enabled_first(api) -> None:
    refused = _switch(api, "north", "things", enabled=True)
    assert refused.status_code == 409
    assert refused.json()["detail"] == ("cannot enable 'things' for site 'north': it depends on 'base', "
                                        "which is not enabled there; enable that first")
    assert _switch(api, "north", "base", enabled=True).status_code == 200
    assert _switch(api, "north", "things", enabled=True).status_code == 200
    assert _switch(api, "north", "top", enabled=True).status_code == 200


def test_disabling_is_refused_while_a_dependant_is_enabled(api) -> None:
    api.enable("north", "base", "things", "top")
    refused = _switch(api, "north", "things", enabled=False)
    assert refused.status_code == 409
    assert refused.json()["detail"] == ("cannot disable 'things' for site 'north': 'top' depends on it; "
                                        "disable that first")
    api.enable("north", "top", "things", enabled=False)
    listing = api.client.get("/api/v1/sites/north/services", headers=api.north).json()["items"]
    assert {s["service"]: s["enabled"] for s in listing} == {"base": True, "things": False, "top": False}


def test_enablement_is_per_site(api) -> None:
    api.enable("north", "base")
    refused = _switch(api, "south", "things", enabled=True)  # base is on for north, not south
    assert refused.status_code == 409


def test_settings_are_validated_with_the_services_model(api) -> None:
    api.enable("north", "base")
    bad = _switch(api, "north", "things", enabled=True, settings={"threshold_kmh": -1})
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith(
        "settings of 'things': threshold_kmh: Input should be greater than 0")
    unknown = _switch(api, "north", "things", enabled=True, settings={"nope": 1})
    assert unknown.status_code == 422
    assert "nope" in unknown.json()["detail"]
    good = _switch(api, "north", "things", enabled=True, stage="pilot", settings={"threshold_kmh": 7.5})
    assert good.status_code == 200, good.text
    body = good.json()
    assert body["settings"] == {"threshold_kmh": 7.5}
    assert body["stage"] == "pilot" and body["enabled"] is True and body["version"] == "1.2.3"


def test_enabled_at_is_set_when_switched_on_and_kept_while_on(api) -> None:
    api.enable("south", "base", enabled=False)
    first = _switch(api, "south", "base", enabled=True).json()
    assert first["enabled_at"] is not None
    again = _switch(api, "south", "base", enabled=True, stage="live", reason="in daily use").json()
    assert again["enabled_at"] == first["enabled_at"]
    assert again["stage"] == "live"
    kept = _switch(api, "south", "base", enabled=True).json()
    assert kept["stage"] == "live"  # a null stage keeps the current one


def test_unknown_service_site_and_bad_body(api) -> None:
    unknown = _switch(api, "north", "nope", enabled=True)
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "service 'nope' is not installed"}
    no_site = _switch(api, "nowhere", "base", enabled=True)
    assert no_site.status_code == 404
    assert no_site.json() == {"detail": "site 'nowhere' not found"}
    missing = api.client.put("/api/v1/sites/north/services/base", json={}, headers=api.admin)
    assert missing.status_code == 422
    assert missing.json()["detail"] == "body field 'enabled': Field required"
    bad_stage = _switch(api, "north", "base", enabled=True, stage="Not A Stage!")
    assert bad_stage.status_code == 422
    assert "body field 'stage'" in bad_stage.json()["detail"]
