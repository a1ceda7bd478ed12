"""Tokens over the API (admin): issue once, list without secrets, refuse malformed requests."""

from __future__ import annotations


def test_issued_token_works_and_is_shown_once(api) -> None:
    request = {"name": "dispatch", "sites": ["south"]}
    issued = api.client.post("/api/v1/tokens", json=request, headers=api.admin)
    assert issued.status_code == 201
    body = issued.json()
    assert body["token"].startswith("sp_") and len(body["token"]) > 40
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert api.client.get("/api/v1/sites/south", headers=headers).status_code == 200
    assert api.client.get("/api/v1/sites/north", headers=headers).status_code == 404
    listed = api.client.get("/api/v1/tokens", headers=api.admin).json()["items"]
    mine = next(t for t in listed if t["id"] == body["id"])
    assert mine["sites"] == ["south"] and mine["role"] == "site"
    assert body["token"] not in issued.text.replace(body["token"], "", 1)
    assert "token" not in mine and "token_hash" not in mine


def test_an_issued_admin_token_is_admin(api) -> None:
    body = api.client.post("/api/v1/tokens", json={"name": "ops", "role": "admin"}, headers=api.admin).json()
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert api.client.get("/api/v1/tokens", headers=headers).status_code == 200


def test_malformed_token_requests_are_refused_with_a_reason(api) -> None:
    no_sites = api.client.post("/api/v1/tokens", json={"name": "x"}, headers=api.admin)
    assert no_sites.status_code == 400
    assert no_sites.json() == {"detail": "a site token needs at least one site"}
    bad_site = api.client.post("/api/v1/tokens", json={"name": "x", "sites": ["a b"]}, headers=api.admin)
    assert bad_site.status_code == 400
    assert "site id 'a b'" in bad_site.json()["detail"]
    admin_with_sites = api.client.post("/api/v1/tokens", json={"name": "x", "role": "admin", "sites": ["n"]},
                                       headers=api.admin)
    assert admin_with_sites.status_code == 400
    bad_role = api.client.post("/api/v1/tokens", json={"name": "x", "role": "root"}, headers=api.admin)
    assert bad_role.status_code == 422
    assert bad_role.json()["detail"].startswith("body field 'role'")


def test_token_list_paginates(api) -> None:
    for i in range(3):
        api.client.post("/api/v1/tokens", json={"name": f"t{i}", "sites": ["north"]}, headers=api.admin)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/api/v1/tokens", params=params, headers=api.admin).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= 5
