"""A site with every built-in service switched on and a simulated stretch of telemetry processed by the real
runner, for the shift report tests (tests/registry/test_shift_report*.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import psycopg

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


def builtin_services() -> dict[str, Service]:
    """The four built-in services, in the order the runner applies them."""
    return {s.name: s for s in (Positioning(), WeightLoading(), TrafficAwareness(), DataQuality())}


@dataclass(frozen=True)
class ProcessedSite:
    site_id: str
    start: datetime  # first and last telemetry instant
    end: datetime
    timezone: str


def process_site(conn: psycopg.Connection, site_id: str, services: dict[str, Service], minutes: float = 40,
                 timezone: str = "Europe/Stockholm", seed: int = 7,
                 shift_ending: datetime | None = None, shifts: list[Shift] | None = None) -> ProcessedSite:
    """Simulate ``minutes`` of the demo quarry (overloads on, default faults), store it as ``site_id`` with every
    service switched on and run each service over it. ``shift_ending``: the telemetry is moved in time to end
    just before it; ``shifts`` replace the site file's."""
    telemetry, _, site, _ = simulated(seed, minutes / 60)
    if shift_ending is not None:
        telemetry = telemetry.copy()
        shift = shift_ending - pd.Timestamp(telemetry["ts"].max()).to_pydatetime() - pd.Timedelta(seconds=5)
        for column in ("ts", "received_at", "device_ts"):
            if column in telemetry:
                telemetry[column] = telemetry[column] + shift
    site = site.model_copy(update={"timezone": timezone, "name": "North Quarry",
                                   **({"shifts": shifts} if shifts is not None else {})})
    save_site(conn, site_id, site)
    for name in services:
        conn.execute("INSERT INTO service_enablement (site_id, service, enabled, enabled_at) VALUES (%s, %s, true,"
                     " now()) ON CONFLICT (site_id, service) DO UPDATE SET enabled = true", (site_id, name))
    insert_telemetry(conn, telemetry.assign(site_id=site_id))
    for service in services.values():
        catch_up_fully(conn, ServiceHost(service), [site_id], timeout=120)
    return ProcessedSite(site_id, pd.Timestamp(telemetry["ts"].min()).to_pydatetime(),
                         pd.Timestamp(telemetry["ts"].max()).to_pydatetime(), timezone)
