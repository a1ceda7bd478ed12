"""A site's alerts: newest first, paginated, filtered to open ones, acknowledged by the caller."""

from __future__ import annotations

import psycopg
import pytest


@pytest.fixture(scope="module")
def alert_ids(api, database_url: str) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {"north": [], "south": []}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for site in ids:
            for i in range(5):
                row = conn.execute(
                    "INSERT INTO service_alerts (site_id, service, key, level, message, created_at)"
                    " VALUES (%s, 'things', %s, 'warning', %s, now() - make_interval(mins => %s))"
                    " RETURNING id",
                    (site, f"k{i}", f"alert {i} on {site}", 10 - i),
                ).fetchone()
                ids[site].append(row[0])
    return ids


def test_alerts_newest_first_and_paginated(api, alert_ids) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/api/v1/sites/north/alerts", params=params, headers=api.north).json()
        assert len(page["items"]) <= 2
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(alert_ids["north"]))


def test_acknowledge_records_who_and_filters_open(api, alert_ids) -> None:
    target = alert_ids["north"][0]
    acked = api.client.post(f"/api/v1/sites/north/alerts/{target}/ack", headers=api.north)
    assert acked.status_code == 200
    assert acked.json()["acknowledged_by"] == "north manager"
    again = api.client.post(f"/api/v1/sites/north/alerts/{target}/ack", headers=api.admin).json()
    assert again["acknowledged_by"] == "north manager"  # the first acknowledgement stays
    open_ids = [a["id"] for a in api.client.get("/api/v1/sites/north/alerts", params={"open": "true"},
                                                headers=api.north).json()["items"]]
    assert target not in open_ids and len(open_ids) == 4


def test_alert_of_another_site_is_not_found_through_this_one(api, alert_ids) -> None:
    foreign = alert_ids["south"][0]
    response = api.client.post(f"/api/v1/sites/north/alerts/{foreign}/ack", headers=api.north)
    assert response.status_code == 404
    assert response.json() == {"detail": f"alert {foreign} not found on site 'north'"}
