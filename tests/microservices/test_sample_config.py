"""Every service folder's sample.yaml is its settings model's defaults, each under its description."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field

from microservices.discovery import discover_services
from microservices.sample_config import load_sample, sample_config
from sitepulse.errors import SitePulseError

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = sorted(p.name for p in (ROOT / "microservices").iterdir() if (p / "__init__.py").exists())


class Inner(BaseModel):
    window_s: float = Field(5.0, description="how long")


class Outer(BaseModel):
    limit_kmh: float = Field(20.0, gt=0, description="a long description " * 12)
    lane_m: float | None = Field(None, description="off when null")
    overrides: dict[str, float] = Field(default_factory=dict)
    inner: Inner = Field(default_factory=lambda: Inner(window_s=7.5), description="nested settings")


def test_the_sample_is_the_model_s_defaults_as_yaml_with_descriptions_as_comments() -> None:
    text = sample_config(Outer())
    assert yaml.safe_load(text) == {"limit_kmh": 20.0, "lane_m": None, "overrides": {}, "inner": {"window_s": 7.5}}
    assert load_sample(text, Outer) == Outer()
    lines = text.splitlines()
    assert all(len(line) <= 120 for line in lines)
    assert lines[lines.index("inner:") - 1] == "# nested settings"
    assert lines[lines.index("  window_s: 7.5") - 1] == "  # how long"
    assert "# overrides" in lines  # a field without a description is named


def test_a_sample_that_is_not_a_mapping_or_not_yaml_is_one_clear_line() -> None:
    with pytest.raises(SitePulseError, match="must be a mapping"):
        load_sample("- 1\n", Outer)
    with pytest.raises(SitePulseError, match="not valid YAML"):
        load_sample("a: [1\n", Outer)


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_service_s_sample_config_loads_and_is_its_settings_defaults(folder: str) -> None:
    package = importlib.import_module(f"microservices.{folder}")
    service = next(s for s in discover_services().values() if type(s).__module__.startswith(package.__name__))
    text = (ROOT / "microservices" / folder / "sample.yaml").read_text(encoding="utf-8")
    assert load_sample(text, service.Settings) == service.Settings()
    assert yaml.safe_load(text) == service.Settings().model_dump(mode="json")
    assert text == sample_config(service.Settings()), f"write it again: sitepulse services sample-config {service.name}"


def test_the_command_prints_a_service_s_sample_and_refuses_an_unknown_name() -> None:
    from typer.testing import CliRunner

    from sitepulse.cli import build_app

    app, runner = build_app(), CliRunner()
    printed = runner.invoke(app, ["services", "sample-config", "weight-loading"])
    assert printed.exit_code == 0
    assert printed.stdout == (ROOT / "microservices" / "weight_loading" / "sample.yaml").read_text(encoding="utf-8")
    unknown = runner.invoke(app, ["services", "sample-config", "nope"])
    assert isinstance(unknown.exception, SitePulseError)
    assert str(unknown.exception).startswith("no installed service is called 'nope'; installed: data-quality, ")
