"""The SDK's Service is generic in its settings model: the type parameter is the service's Settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ValidationError

from microservices.positioning import Positioning
from microservices.positioning.settings import PositioningSettings
from microservices.sdk import Batch, NoSettings, Outputs, Service, SiteCache, settings_parameter, validate_declaration
from microservices.traffic_awareness import TrafficAwareness
from microservices.traffic_awareness.settings import TrafficSettings
from sitepulse.errors import SitePulseError


class Limits(BaseModel):
    top_kmh: float = 30.0


class Other(BaseModel):
    pass


class Counted(Service[Limits]):
    name = "counted"

    def process(self, batch: Batch, state: dict, settings: Limits) -> tuple[Outputs, dict]:
        return Outputs(), state


class Plain(Service):
    name = "plain"

    def process(self, batch: Batch, state: dict, settings: NoSettings) -> tuple[Outputs, dict]:
        return Outputs(), state


def test_the_type_parameter_is_the_settings_model() -> None:
    assert Counted.Settings is Limits and settings_parameter(Counted) is Limits
    assert type("Derived", (Counted,), {}).Settings is Limits  # a subclass keeps it
    assert Plain.Settings is NoSettings and settings_parameter(Plain) is None
    assert Positioning.Settings is PositioningSettings and TrafficAwareness.Settings is TrafficSettings
    validate_declaration(Counted())
    validate_declaration(Plain())


def test_a_settings_model_other_than_the_type_parameter_is_refused_in_one_line() -> None:
    class Confused(Service[Limits]):
        name = "confused"
        Settings = Other

        def process(self, batch: Batch, state: dict, settings: Other) -> tuple[Outputs, dict]:
            return Outputs(), state

    with pytest.raises(SitePulseError, match=r"^micro-service 'confused': Settings Other is not its type parameter "
                                             r"Limits \(Service\[Limits\]\)$"):
        validate_declaration(Confused())


@pytest.mark.parametrize(("model", "field"), [(PositioningSettings, "min_dwell_s"), (TrafficSettings, "grid_s")])
def test_a_sites_settings_are_read_only_values(model: type[BaseModel], field: str) -> None:
    """What the host validated is what every stage of a step and every route sees: none may change it."""
    settings = model()
    with pytest.raises(ValidationError, match="frozen"):
        setattr(settings, field, 2.0)
    with pytest.raises(ValidationError, match="frozen"):
        settings.motion.max_step_s = 9.0


def test_a_site_cache_builds_once_per_site_file_and_setting_and_drops_the_oldest() -> None:
    from sitepulse.sitefile import SiteConfig

    built: list[tuple] = []
    cache: SiteCache[tuple] = SiteCache(limit=2)

    def get(site: SiteConfig | None, margin: float) -> tuple:
        return cache.get(site, lambda: built.append((site, margin)) or (site, margin), margin)

    north, south = SiteConfig(name="north"), SiteConfig(name="south")
    assert get(north, 10) is get(SiteConfig(name="north"), 10)  # same content: built once
    get(north, 20)
    assert len(built) == 2
    get(south, 10)  # a third key: the oldest (north, 10) goes
    get(north, 10)
    assert len(built) == 4 and get(None, 10) == (None, 10)


def test_importing_the_sdk_imports_no_web_framework() -> None:
    """A pure ``process``, its tests and the runner load the SDK without FastAPI or Starlette (route helpers are in
    sdk_routes); the old route names still resolve from the SDK, loading them only then."""
    import subprocess
    import sys

    probe = ("import sys, microservices.sdk as sdk; loaded = sorted(m for m in ('fastapi', 'starlette') if m in"
             " sys.modules); from microservices.sdk import PageDep, ServiceRequest; from microservices import"
             " sdk_routes; assert PageDep is sdk_routes.PageDep and ServiceRequest is sdk_routes.ServiceRequest;"
             " print(loaded)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_site_view_is_the_site_files_zones_machines_and_shifts_read_only() -> None:
    import dataclasses

    from microservices.sdk import SiteView, shifts_at
    from sitepulse.sitefile import parse_site

    site = parse_site("""
name: North
timezone: Europe/Oslo
shifts: [{name: day, start: "06:00", end: "18:00"}, {name: night, start: "18:00", end: "06:00"}]
zones:
  - {id: blast, kind: blast, name: Blast A, polygon: [[10.0, 60.0], [10.001, 60.0], [10.001, 60.001]]}
  - {id: pit, type: load, speed_limit_kmh: 15, polygon: [[10.002, 60.0], [10.003, 60.0], [10.003, 60.001]]}
machines:
  - {id: H1, kind: hauler, model: CAT 775, rated_payload_kg: 64000}
  - {id: L1, kind: loader}
""")
    batch = Batch(site_id="north", telemetry=pd.DataFrame(), site=site, machines=pd.DataFrame(),
                  read=lambda q, p=None: pd.DataFrame())
    view = batch.site_view
    assert view is batch.site_view  # built once per batch
    assert [z.id for z in view.zones_of("restricted")] == ["blast"] and view.zones["blast"].label == "Blast A"
    assert view.zones["pit"].speed_limit_kmh == 15 and view.zones["pit"].label == "pit"
    assert view.zones["blast"].polygon[0] == (10.0, 60.0)
    assert [m.id for m in view.machines_of("hauler")] == ["H1"] and view.machines["H1"].rated_payload_kg == 64000
    assert view.machines["L1"].rated_payload_kg is None and view.timezone == "Europe/Oslo"
    with pytest.raises(TypeError):
        view.zones["x"] = view.zones["pit"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.machines["H1"].kind = "loader"  # type: ignore[misc]
    names, _ = shifts_at(pd.DatetimeIndex(["2026-06-01T03:00Z", "2026-06-01T10:00Z"]), view.timezone, view.shifts)
    assert list(names) == ["night", "day"]
    empty = Batch("x", pd.DataFrame(), None, pd.DataFrame(), print).site_view
    assert SiteView.of(None).zones == {} and empty.shifts == () and empty.machines == {}


def test_batch_floats_reads_a_column_of_nulls_as_nan() -> None:
    telemetry = pd.DataFrame({"payload_kg": [None, None], "lat": [1.0, None]})  # all-null: object dtype
    batch = Batch("x", telemetry, None, pd.DataFrame(), print)
    assert telemetry["payload_kg"].dtype == object
    assert batch.floats("payload_kg").dtype == float and np.isnan(batch.floats("payload_kg")).all()
    assert np.isnan(batch.floats("absent")).all() and batch.floats("lat")[0] == 1.0


def test_every_name_the_sdk_promises_resolves() -> None:
    import microservices.sdk as sdk

    assert all(hasattr(sdk, name) for name in sdk.__all__)
    assert sdk.TELEMETRY_FIELDS >= {"ts", "seq", "payload_kg", "engine_on", "extra"}


def test_a_kpi_names_only_inputs_the_host_can_fill() -> None:
    from microservices.sdk import Kpi

    assert Kpi("k", "", "", True, "SELECT 1", inputs=("newest_samples",)).inputs == ("newest_samples",)
    with pytest.raises(SitePulseError, match=r"KPI 'k': unknown inputs \['machine_last'\]"):
        Kpi("k", "", "", True, "SELECT 1", inputs=("machine_last",))


def test_births_update_the_site_files_machines_and_add_the_undeclared() -> None:
    from microservices.sdk import MachineView, SiteView
    from sitepulse.sitefile import parse_site

    site = SiteView.of(parse_site("""
name: North
machines:
  - {id: H1, kind: hauler, model: CAT 775, rated_payload_kg: 64000}
  - {id: L1, kind: loader}
"""))
    machines = site.with_births([("H1", "other", "", None), ("L1", "excavator", "EC950", None),
                                 ("X9", "other", "", None), ("D1", "dozer", "D6", None)])
    assert machines == {"H1": MachineView("H1", "hauler", "CAT 775", 64000),  # a vague birth keeps the file's
                        "L1": MachineView("L1", "excavator", "EC950", None),  # what the device says wins
                        "X9": MachineView("X9", "other", "", None), "D1": MachineView("D1", "dozer", "D6", None)}
    assert site.machines["L1"].kind == "loader"  # the site's own view is unchanged


def test_the_host_calls_a_card_with_its_context_or_as_the_first_contract_did() -> None:
    """``card(context, settings)`` gets the CardContext; a plugin's ``card(site_id, read, settings)`` keeps working."""
    from datetime import UTC, datetime

    from microservices.sdk import Card, CardContext, SiteView, card_of

    def read(query: str, params: object = None) -> pd.DataFrame:
        return pd.DataFrame({"n": [7]})

    context = CardContext("north", "", read, SiteView(name="North"), {}, datetime(2026, 1, 5, tzinfo=UTC),
                          count_alerts=lambda service, cap: {"now": 3}.get(service, 0))

    class Now(Plain):
        name = "now"

        def card(self, context: CardContext, settings: NoSettings) -> Card:
            return Card(title=context.site.name, metrics=[{"label": "alerts", "value": context.alert_count()}])

    class Then(Plain):
        name = "then"

        def card(self, site_id: str, read: Any, settings: NoSettings) -> Card:
            return Card(title=site_id, metrics=[{"label": "n", "value": int(read("SELECT 7 AS n", {})["n"][0])}])

    now = card_of(Now(), context.for_service("now"), NoSettings())
    assert now is not None and now.title == "North" and now.metrics[0]["value"] == 3
    then = card_of(Then(), context.for_service("then"), NoSettings())
    assert then is not None and then.title == "north" and then.metrics[0]["value"] == 7
    assert card_of(Plain(), context, NoSettings()) is None  # no card: the base class's
    assert CardContext("x", "", read, SiteView(), {}, context.now).alert_count() == 0  # nothing to count
