"""Fixtures for runner tests: a migrated database with the sample services' schemas, and telemetry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from sitepulse.migrations import upgrade

sys.path.insert(0, str(Path(__file__).parent))
from sample_services import SOURCES  # noqa: E402

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


@pytest.fixture
def runner_db(fresh_database_url: str) -> Iterator[str]:
    """A fresh database with the sample services' schemas."""
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        upgrade(conn, SOURCES)
    yield fresh_database_url


def enable(conn: psycopg.Connection, site_id: str, *services: str) -> None:
    for service in services:
        conn.execute(
            "INSERT INTO service_enablement (site_id, service, enabled, enabled_at) "
            "VALUES (%s, %s, true, now()) "
            "ON CONFLICT (site_id, service) DO UPDATE SET enabled = true",
            (site_id, service),
        )


def make_samples(site_id: str, machines: int, per_machine: int, seed: int = 7) -> pd.DataFrame:
    """Per-machine 1 Hz samples with integer payloads (sums stay exact in any grouping)."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(machines):
        frames.append(
            pd.DataFrame(
                {
                    "site_id": site_id,
                    "machine_id": f"M{index:02d}",
                    "ts": [START + timedelta(seconds=s) for s in range(per_machine)],
                    "seq": np.arange(per_machine),
                    "payload_kg": rng.integers(0, 40_000, per_machine).astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
