"""The needs backlog: raised in plain words, ranked by value over effort, linked to the service that answers it."""

from __future__ import annotations


def _raise(api, text: str, value: int, effort: int, headers=None, **extra):
    return api.client.post("/api/v1/sites/north/needs", json={"text": text, "value_score": value, "effort": effort,
                                                              **extra}, headers=headers or api.north)


def test_needs_are_listed_by_priority(api) -> None:
    low = _raise(api, "Know when the crusher queue is long", 4, 8)
    assert low.status_code == 201, low.text
    assert low.json()["priority"] == 0.5 and low.json()["raised_by"] == "north manager"
    assert low.json()["status"] == "open" and low.json()["service"] is None
    _raise(api, "Stop overloading the haulers", 9, 3, api.admin, service="things")
    _raise(api, "Fuel per tonne per machine", 6, 3)
    page = api.client.get("/api/v1/sites/north/needs", params={"limit": 2}, headers=api.north).json()
    assert [n["priority"] for n in page["items"]] == [3.0, 2.0]
    assert page["items"][0]["service"] == "things" and page["items"][0]["raised_by"] == "bootstrap-admin"
    rest = api.client.get("/api/v1/sites/north/needs", params={"cursor": page["next_cursor"]},
                          headers=api.north).json()
    assert [n["text"] for n in rest["items"]] == ["Know when the crusher queue is long"]
    assert rest["next_cursor"] is None


def test_bad_needs_are_refused_with_one_reason(api) -> None:
    too_high = _raise(api, "x", 11, 3).json()["detail"]
    assert too_high == "body field 'value_score': Input should be less than or equal to 10"
    assert _raise(api, "x", 5, 0).json()["detail"] == "body field 'effort': Input should be greater than or equal to 1"
    assert _raise(api, "   ", 5, 2).json()["detail"] == "body field 'text': say what the site needs, in plain words"
    assert _raise(api, "x", 5, 2, service="Not A Name").status_code == 422
    assert _raise(api, "x", 5, 2, headers=api.both).status_code == 201
    south = api.client.post("/api/v1/sites/south/needs", json={"text": "x", "value_score": 1, "effort": 1},
                            headers=api.north)
    assert south.status_code == 404


def test_a_need_is_rescored_and_answered(api) -> None:
    need = _raise(api, "See queue times at the loader", 5, 5).json()
    changed = api.client.patch(f"/api/v1/sites/north/needs/{need['id']}",
                               json={"effort": 2, "service": "top", "status": "answered"}, headers=api.admin)
    assert changed.status_code == 200
    assert (changed.json()["priority"], changed.json()["service"], changed.json()["status"]) == (2.5, "top", "answered")
    open_only = api.client.get("/api/v1/sites/north/needs", params={"status": "open"}, headers=api.north).json()
    assert need["id"] not in [n["id"] for n in open_only["items"]]
    missing = api.client.patch("/api/v1/sites/north/needs/999999", json={"status": "dropped"}, headers=api.admin)
    assert missing.status_code == 404 and missing.json() == {"detail": "need 999999 not found on site 'north'"}
