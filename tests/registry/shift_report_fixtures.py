"""One site with every built-in service switched on and a simulated half hour processed by the real runner, shared
by the shift report tests (tests/registry/test_shift_report*.py, tests/browser/test_report_settings.py): made once
per session in a database of its own, because simulating and running four services is most of their cost.

Import ``shared_site`` into a test module to use it as a fixture."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
import pytest

from evaluation.stored import catch_up_fully, insert_telemetry
from evaluation.weight_loading import simulated
from microservices.data_quality import DataQuality
from microservices.positioning import Positioning
from microservices.runner import ServiceHost
from microservices.sdk import Service
from microservices.traffic_awareness import TrafficAwareness
from microservices.weight_loading import WeightLoading
from sitepulse.sitefile import Shift
from sitepulse.sites import save_site
from tests.conftest import _fresh_database

SITE = "quarry"
TIMEZONE = "Europe/Stockholm"


def builtin_services() -> dict[str, Service]:
    """The four built-in services, in the order the runner applies them."""
    return {s.name: s for s in (Positioning(), WeightLoading(), TrafficAwareness(), DataQuality())}


@dataclass(frozen=True)
class ProcessedSite:
    database_url: str
    site_id: str
    start: datetime  # first and last telemetry instant (UTC)
    end: datetime
    timezone: str
    shift_end: datetime  # UTC: the site's one shift, 'early', ends on the first whole local minute after the data


def process_site(conn: psycopg.Connection, database_url: str, site_id: str = SITE, minutes: float = 30,
                 seed: int = 7) -> ProcessedSite:
    """Simulate ``minutes`` of the demo quarry (overloads on, default faults), store it as ``site_id`` (North
    Quarry, Stockholm time, one shift ending just after the data) with every service on, and run each over it."""
    telemetry, _, site, _ = simulated(seed, minutes / 60)
    start, end = (pd.Timestamp(telemetry["ts"].min()).to_pydatetime(),
                  pd.Timestamp(telemetry["ts"].max()).to_pydatetime())
    local_end = end.astimezone(ZoneInfo(TIMEZONE))
    shift_end = local_end.replace(second=0, microsecond=0) + timedelta(minutes=1 + math.ceil(local_end.second / 60))
    shift = Shift(name="early", start=(shift_end - timedelta(hours=1)).time(), end=shift_end.time())
    save_site(conn, site_id, site.model_copy(update={"timezone": TIMEZONE, "name": "North Quarry", "shifts": [shift]}))
    services = builtin_services()
    for name in services:
        conn.execute("INSERT INTO service_enablement (site_id, service, enabled, enabled_at) VALUES (%s, %s, true,"
                     " now()) ON CONFLICT (site_id, service) DO UPDATE SET enabled = true", (site_id, name))
    insert_telemetry(conn, telemetry.assign(site_id=site_id))
    for service in services.values():
        catch_up_fully(conn, ServiceHost(service), [site_id], timeout=120)
    return ProcessedSite(database_url, site_id, start, end, TIMEZONE, shift_end.astimezone(start.tzinfo))


@pytest.fixture(scope="session")
def shared_site(postgres_server) -> ProcessedSite:
    """The processed site in the session's 'shift_reports' database."""
    url = _fresh_database(postgres_server, "shift_reports")
    with psycopg.connect(url, autocommit=True) as conn:
        return process_site(conn, url)
