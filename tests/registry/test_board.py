"""The lifecycle board: a need raised, voted and commented from the site, services at every stage in their
column (implemented vs evaluated by days since the switch), contributed services with where they run, and
every change of a need audited with who made it."""

from __future__ import annotations

import psycopg


def _column(board: dict, key: str) -> list[dict]:
    return next(c["items"] for c in board["columns"] if c["key"] == key)


def test_needs_are_voted_commented_and_audited(api) -> None:
    raised = api.client.post("/api/v1/sites/north/needs", headers=api.north,
                             json={"text": "Know which trucks leave overloaded", "value_score": 8, "effort": 4})
    assert raised.status_code == 201, raised.text
    need = raised.json()["id"]
    assert api.client.put(f"/api/v1/sites/north/needs/{need}/vote", headers=api.north).json()["votes"] == 1
    assert api.client.put(f"/api/v1/sites/north/needs/{need}/vote", headers=api.north).json()["votes"] == 1
    assert api.client.put(f"/api/v1/sites/north/needs/{need}/vote", headers=api.both).json()["votes"] == 2
    assert api.client.delete(f"/api/v1/sites/north/needs/{need}/vote", headers=api.both).json()["votes"] == 1
    said = api.client.post(f"/api/v1/sites/north/needs/{need}/comments", headers=api.both,
                           json={"text": "the crusher shift sees this every week"})
    assert said.status_code == 201 and said.json()["author"] == "regional manager"
    changed = api.client.patch(f"/api/v1/sites/north/needs/{need}", headers=api.both, json={"effort": 2})
    assert changed.json()["priority"] == 4.0
    assert api.client.put(f"/api/v1/sites/south/needs/{need}/vote", headers=api.both).status_code == 404

    listed = api.client.get("/api/v1/sites/north/needs", headers=api.north).json()["items"]
    mine = next(n for n in listed if n["id"] == need)
    assert (mine["votes"], mine["voted"], mine["comments"]) == (1, True, 1)
    history = api.client.get(f"/api/v1/sites/north/needs/{need}/history", headers=api.north).json()
    assert [(c["action"], c["actor"]) for c in history["changes"]] == [
        ("raised", "north manager"), ("voted", "north manager"), ("voted", "regional manager"),
        ("unvoted", "regional manager"), ("commented", "regional manager"), ("changed", "regional manager")]
    assert history["changes"][-1]["detail"] == {"effort": [4, 2]}
    assert history["comments"][0]["text"] == "the crusher shift sees this every week"


def test_board_places_each_service_at_its_stage(api, database_url: str) -> None:
    admin = api.admin
    for name, stages in (("things", ["proposed", "prioritized"]), ("top", ["proposed", "retired"])):
        for stage in stages:
            moved = api.client.put(f"/api/v1/sites/north/services/{name}/stage", headers=admin,
                                   json={"stage": stage, "reason": f"to {stage} for the board test"})
            assert moved.status_code == 200, moved.text
    api.enable("north", "base")
    api.enable("south", "base")
    with psycopg.connect(database_url, autocommit=True) as conn:  # switched on nine days ago: evaluable
        conn.execute("UPDATE service_enablement SET enabled_at = now() - interval '9 days'"
                     " WHERE site_id = 'north' AND service = 'base'")
    shared = api.client.put("/api/v1/services/base/sharing", headers=admin,
                            json={"shared": True, "contributed_by": "North Quarry Co"})
    assert shared.status_code == 200, shared.text
    linked = api.client.post("/api/v1/sites/north/needs", headers=api.north,
                             json={"text": "Depend on nothing", "value_score": 5, "effort": 5, "service": "base"})
    assert linked.status_code == 201

    board = api.client.get("/api/v1/sites/north/lifecycle", headers=api.north).json()
    assert [c["key"] for c in board["columns"]] == ["needs", "prioritized", "developing", "trial", "implemented",
                                                    "evaluated", "retired"]
    assert [i["service"] for i in _column(board, "prioritized")] == ["things"]
    assert [i["service"] for i in _column(board, "retired")] == ["top"]
    assert _column(board, "retired")[0]["last_change"]["reason"] == "to retired for the board test"
    (base,) = _column(board, "evaluated")
    assert base["service"] == "base" and base["evaluation"]["recommendation"] in ("scale", "iterate", "retire")
    assert base["evaluation"]["after_days"] >= 5 and base["needs"][0]["text"] == "Depend on nothing"
    assert base["sites_using"] == {"count": 2, "visible": ["north"]}  # the north token sees only north
    assert all(i["kind"] == "need" for i in _column(board, "needs"))
    assert "Depend on nothing" not in [i["text"] for i in _column(board, "needs")]  # answered by base
    assert board["contributed"] == [{"service": "base", "contributed_by": "North Quarry Co", "shared": True,
                                     "sites_using": {"count": 2, "visible": ["north"]}}]
    both = api.client.get("/api/v1/sites/north/lifecycle", headers=api.both).json()
    assert both["contributed"][0]["sites_using"]["visible"] == ["north", "south"]
