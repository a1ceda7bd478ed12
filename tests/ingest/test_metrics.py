"""Metrics: counters saved per worker and rendered in Prometheus text format by another process."""

from __future__ import annotations

import time

import orjson
import psycopg

from ingest.metrics import render_prometheus
from ingest.topics import telemetry_topic
from sitepulse.settings import Settings
from tests.conftest import running_worker, wait_until

from .conftest import Publisher


def test_counters_are_rendered_for_prometheus(ingest_settings: Settings, publisher: Publisher, site_id: str) -> None:
    url = ingest_settings.database_url.get_secret_value()
    topic = telemetry_topic(site_id, "m1")
    t0 = time.time() - 60
    with running_worker(ingest_settings) as worker:
        publisher.publish(
            [(topic, orjson.dumps({"ts": t0 + i, "seq": i})) for i in range(50)]
            + [(topic, b"nope"), (topic, orjson.dumps({"ts": t0 + 1, "seq": 1}))]
        )
        assert wait_until(lambda: worker.counters.received_messages == 52, 20)
        assert "rejected=1" in worker.counters.summary()
    with psycopg.connect(url) as conn:
        text = render_prometheus(conn)
    worker_label = f'{{worker="{worker.worker_id}"}}'
    assert f"sitepulse_ingest_received_messages_total{worker_label} 52" in text
    assert f"sitepulse_ingest_stored_rows_total{worker_label} 50" in text
    assert f"sitepulse_ingest_duplicate_rows_total{worker_label} 1" in text
    assert f"sitepulse_ingest_rejected_total{worker_label} 1" in text
    assert "# TYPE sitepulse_ingest_commit_seconds_total counter" in text
    assert "# TYPE sitepulse_ingest_lag_seconds gauge" in text
    assert f"sitepulse_ingest_worker_up{worker_label} 1" in text
