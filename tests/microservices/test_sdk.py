"""The SDK's Service is generic in its settings model: the type parameter is the service's Settings."""

from __future__ import annotations

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
