"""A service on a site: legal lifecycle moves only, each with a reason, audited; it runs only in pilot or live."""

from __future__ import annotations

import psycopg
import pytest


def _stage(api, site: str, name: str, stage: str, reason: str = "agreed in the site meeting", headers=None):
    return api.client.put(f"/api/v1/sites/{site}/services/{name}/stage", json={"stage": stage, "reason": reason},
                          headers=headers or api.admin)


def _history(api, site: str, name: str, headers=None) -> dict:
    response = api.client.get(f"/api/v1/sites/{site}/services/{name}/stage-history", headers=headers or api.north)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_co_creation_path_is_walked_and_audited(api) -> None:
    for stage in ("proposed", "prioritized", "developing", "pilot", "live"):
        response = _stage(api, "north", "base", stage, f"moving to {stage}")
        assert response.status_code == 200, response.text
        assert response.json()["stage"] == stage
    assert response.json()["next_stages"] == ["pilot", "retired"]
    history = _history(api, "north", "base")
    assert [(c["from_stage"], c["to_stage"]) for c in history["items"]] == [
        (None, "proposed"), ("proposed", "prioritized"), ("prioritized", "developing"), ("developing", "pilot"),
        ("pilot", "live")]
    assert {c["changed_by"] for c in history["items"]} == {"bootstrap-admin"}
    assert history["items"][-1]["reason"] == "moving to live"
    assert all(c["changed_at"] for c in history["items"])
    assert history["stage"] == "live" and "pilot -> live, developing, retired" in history["rules"]


def test_illegal_transitions_are_refused_with_the_allowed_ones(api) -> None:
    assert _stage(api, "south", "base", "proposed").status_code == 200
    skipped = _stage(api, "south", "base", "live")
    assert skipped.status_code == 409
    assert skipped.json() == {"detail": "cannot move 'base' on site 'south' from stage 'proposed' to 'live'; "
                                        "allowed next: prioritized, trial, retired"}
    new = _stage(api, "south", "things", "developing")
    assert new.status_code == 409
    assert new.json()["detail"] == ("cannot move 'things' on site 'south' from no stage (it is new on this site) "
                                    "to 'developing'; allowed next: proposed, trial, pilot")
    assert _stage(api, "south", "base", "retired", "nobody needs it").status_code == 200
    assert _stage(api, "south", "base", "pilot").json()["detail"].endswith("allowed next: proposed")
    revived = _stage(api, "south", "base", "proposed", "the new crusher needs it after all")
    assert revived.status_code == 200
    history = _history(api, "south", "base", api.both)["items"]
    assert [c["to_stage"] for c in history] == ["proposed", "retired", "proposed"]  # refusals leave no trace


def test_a_reason_is_required_and_stages_are_known(api) -> None:
    missing = api.client.put("/api/v1/sites/north/services/top/stage", json={"stage": "proposed"}, headers=api.admin)
    assert missing.status_code == 422
    assert missing.json()["detail"] == "body field 'reason': Field required"
    blank = _stage(api, "north", "top", "proposed", "   ")
    assert blank.status_code == 422 and "reason" in blank.json()["detail"]
    unknown = _stage(api, "north", "top", "beta")
    assert unknown.status_code == 422 and "body field 'stage'" in unknown.json()["detail"]
    assert _stage(api, "north", "top", "proposed", headers=api.north).status_code == 403
    assert _stage(api, "north", "nope", "proposed").json() == {"detail": "service 'nope' is not installed"}


def test_a_service_runs_only_in_pilot_or_live(api, db: psycopg.Connection) -> None:
    api.client.put("/api/v1/sites/south/services/base/stage", json={"stage": "retired", "reason": "reset"},
                   headers=api.admin)
    refused = api.client.put("/api/v1/sites/south/services/base", json={"enabled": True}, headers=api.admin)
    assert refused.status_code == 409
    assert refused.json()["detail"] == ("cannot enable 'base' for site 'south' at stage 'retired': a service runs on "
                                        "a site only at stage 'pilot' or 'live'; move it towards 'pilot' first "
                                        "(next from 'retired': proposed)")
    # switching on a service with no stage pilots it, audited
    top = api.client.put("/api/v1/sites/south/services/top", json={"enabled": False}, headers=api.admin)
    assert top.status_code == 200
    api.client.put("/api/v1/sites/north/services/base", json={"enabled": False}, headers=api.admin)
    on = api.client.put("/api/v1/sites/north/services/things", json={"enabled": True}, headers=api.admin)
    assert on.status_code == 409  # its dependency base is off (the dependency rule still holds)
    assert _stage(api, "north", "base", "pilot", "iterate: fix the dashboard").status_code == 200
    api.enable("north", "base", "things")
    things = _history(api, "north", "things")["items"]
    assert [(c["from_stage"], c["to_stage"], c["reason"]) for c in things] == [
        (None, "pilot", "switched on without a stage on this site: piloting it")]
    # leaving pilot/live switches it off, unless something running depends on it
    blocked = _stage(api, "north", "base", "developing", "rework")
    assert blocked.status_code == 409
    assert blocked.json()["detail"] == ("cannot disable 'base' for site 'north' (moving it to 'developing' switches "
                                        "it off): 'things' depends on it; disable that first")
    back = _stage(api, "north", "things", "developing", "rework the counting")
    assert back.status_code == 200
    assert back.json()["enabled"] is False and back.json()["stage"] == "developing"
    row = db.execute("SELECT enabled, stage FROM service_enablement WHERE site_id = 'north' AND service = 'things'")
    assert row.fetchone() == (False, "developing")


def test_the_enablement_put_follows_the_same_rules(api) -> None:
    api.client.put("/api/v1/sites/south/services/base/stage", json={"stage": "retired", "reason": "reset"},
                   headers=api.admin)
    body = {"enabled": True, "stage": "pilot"}
    refused = api.client.put("/api/v1/sites/south/services/base", json=body, headers=api.admin)
    assert refused.status_code == 409
    assert "from stage 'retired' to 'pilot'; allowed next: proposed" in refused.json()["detail"]


def test_other_writers_are_held_to_pilot_or_live_by_the_database(db: psycopg.Connection) -> None:
    db.execute("INSERT INTO service_enablement (site_id, service, enabled) VALUES ('db-site', 'base', true)")
    stage = db.execute("SELECT stage FROM service_enablement WHERE site_id = 'db-site'").fetchone()[0]
    assert stage == "pilot"
    with pytest.raises(psycopg.errors.CheckViolation, match="only at pilot or live"):
        db.execute("UPDATE service_enablement SET stage = 'developing' WHERE site_id = 'db-site'")
