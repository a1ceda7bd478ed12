"""Every error is JSON with one readable reason: unknown paths, wrong methods, validation, bad JSON."""

from __future__ import annotations


def test_unknown_path_is_json_404(api) -> None:
    response = api.client.get("/api/v1/nothing-here", headers=api.admin)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "no such path: /api/v1/nothing-here"}


def test_wrong_method_is_json_405(api) -> None:
    response = api.client.delete("/api/v1/sites", headers=api.admin)
    assert response.status_code == 405
    assert response.json() == {"detail": "DELETE is not allowed on /api/v1/sites"}


def test_malformed_json_body_is_422_with_a_sentence(api) -> None:
    response = api.client.put("/api/v1/sites/north/services/base", content=b"{not json",
                              headers={**api.admin, "Content-Type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"].startswith("request body: JSON decode error")
    assert isinstance(body["errors"], list) and "input" not in body["errors"][0]


def test_path_parameter_errors_name_the_parameter(api) -> None:
    response = api.client.post("/api/v1/sites/north/alerts/abc/ack", headers=api.admin)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("path parameter 'alert_id': ")


def test_errors_never_carry_tracebacks(api) -> None:
    for method, url in (("GET", "/api/v1/sites/north/alerts?limit=x"), ("GET", "/nope"),
                        ("GET", "/api/v1/sites/north/alerts?cursor=zzz")):
        response = api.client.request(method, url, headers=api.admin)
        assert response.status_code >= 400
        assert set(response.json()) <= {"detail", "errors"}
        assert "Traceback" not in response.text


def test_values_the_database_cannot_store_are_400_not_500(api) -> None:
    assert api.client.get("/api/v1/sites/a%00b", headers=api.admin).status_code == 404
    response = api.client.post("/api/v1/tokens", json={"name": "nul\u0000name", "sites": ["north"]},
                               headers=api.admin)
    assert response.status_code == 400
    assert "cannot store" in response.json()["detail"]
    alerts = api.client.get("/api/v1/sites/north/alerts", params={"service": "a\u0000"}, headers=api.admin)
    assert alerts.status_code == 400


def test_each_error_kind_has_one_status_and_subclasses_inherit_it() -> None:
    """The one table: the registry's own refusals (subclasses of the kernel's kinds) get their kind's status."""
    from registry.api.errors import status_of
    from registry.enablement import EnablementConflict, InvalidSettings
    from registry.lifecycle import IllegalTransition
    from registry.sharing import NotShared
    from sitepulse import errors

    expected = {errors.SitePulseError: 400, errors.ConfigError: 400, errors.NotAuthenticated: 401,
                errors.NotAllowed: 403, errors.NotFound: 404, errors.Conflict: 409, errors.TooLarge: 413,
                errors.UnsupportedType: 415, errors.InvalidInput: 422, EnablementConflict: 409, NotShared: 409,
                IllegalTransition: 409, InvalidSettings: 422}
    made = {kind: kind("setting", "problem") if kind is errors.ConfigError else kind("problem") for kind in expected}
    assert {kind: status_of(error) for kind, error in made.items()} == expected


def test_a_missing_token_is_401_with_the_bearer_challenge(api) -> None:
    response = api.client.get("/api/v1/sites")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "missing or invalid bearer token"}
