"""/metrics: request counts per route template (not raw paths), runner lag per service, admin only."""

from __future__ import annotations

import orjson
import psycopg


def test_metrics_count_requests_by_route_template(api, db: psycopg.Connection) -> None:
    api.enable("north", "base", "things")
    api.client.get("/api/v1/sites/north/things/things", headers=api.north)
    api.client.get("/api/v1/sites/north/alerts", headers=api.north)
    api.client.get("/no/such/path", headers=api.north)
    db.execute("INSERT INTO service_checkpoints (service, site_id, data_until)"
               " VALUES ('things', 'north', now() - interval '90 seconds')")
    response = api.client.get("/metrics", headers=api.admin)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert ('sitepulse_api_requests_total{method="GET",route="/api/v1/sites/{site_id}/things/things",'
            'status="200"} 1') in text
    assert 'route="/api/v1/sites/{site_id}/alerts",status="200"' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "/api/v1/sites/north" not in text  # raw paths never become labels
    assert ('sitepulse_api_request_duration_seconds_count{method="GET",'
            'route="/api/v1/sites/{site_id}/alerts"}') in text
    lag = next(line for line in text.splitlines()
               if line.startswith('sitepulse_service_lag_seconds{service="things",site="north"}'))
    assert 89 < float(lag.split()[-1]) < 200


def test_decoder_counts_sum_every_worker_for_admins_only(api, db: psycopg.Connection) -> None:
    for worker, counters in (
        ("w-decoders-1", {"decoder_messages": {"sparkplug-b": 40, "native-json": 5},
                          "decoder_rejects": {"sparkplug-b": {"seq-gap": 1}}}),
        ("w-decoders-2", {"decoder_messages": {"sparkplug-b": 2},
                          "decoder_rejects": {"sparkplug-b": {"seq-gap": 2, "before-birth": 1}}}),
        ("w-plain", {"received_messages": 9}),
    ):
        db.execute("INSERT INTO ingest_worker_stats (worker_id, host, pid, started_at, counters)"
                   " VALUES (%s, 'h', 1, now(), %s::jsonb)", (worker, orjson.dumps(counters).decode()))
    response = api.client.get("/api/v1/ingest/decoders", headers=api.admin)
    assert response.status_code == 200
    assert response.json()["items"] == [
        {"decoder": "native-json", "messages": 5, "rejected": 0, "rejects": {}},
        {"decoder": "sparkplug-b", "messages": 42, "rejected": 4, "rejects": {"seq-gap": 3, "before-birth": 1}}]
    assert api.client.get("/api/v1/ingest/decoders", headers=api.north).status_code == 403
