"""Plugins are limited by entry-point name before they are imported; a broken one is one line, the others load."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from decoders.discovery import discover_decoders
from microservices.discovery import discover_services
from sitepulse.errors import SitePulseError

BROKEN = "no_such_package_sitepulse_test"


@pytest.fixture
def broken_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution whose service and decoder point at a module that does not exist."""
    info = tmp_path / "sitepulse_broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sitepulse-broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[sitepulse.microservices]\nbroken-service = {BROKEN}:Service\n\n"
        f"[sitepulse.decoders]\nbroken-decoder = {BROKEN}:Decoder\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_broken_service_is_skipped_in_one_line_and_the_others_load(broken_plugins, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        services = discover_services()
    assert {"positioning", "weight-loading", "traffic-awareness", "data-quality"} <= set(services)
    assert "broken-service" not in services
    lines = [r.getMessage() for r in caplog.records if "broken-service" in r.getMessage()]
    assert lines == [f"sitepulse.microservices plugin 'broken-service' skipped: {BROKEN}:Service does not import "
                     f"(ModuleNotFoundError: No module named '{BROKEN}')"]


def test_load_services_imports_only_what_it_names(broken_plugins, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert list(discover_services("positioning")) == ["positioning"]
    assert not caplog.records  # the broken plugin was never imported
    with pytest.raises(SitePulseError, match=r"SITEPULSE_LOAD_SERVICES names 'broken-service', which fails to load: "):
        discover_services("positioning,broken-service")
    with pytest.raises(SitePulseError, match=r"names services that are not installed: \['nope'\]"):
        discover_services("positioning,nope")


def test_a_broken_decoder_is_skipped_and_the_others_load(broken_plugins, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        decoders = discover_decoders()
    assert {"mapped-json", "sparkplug-b", "iso15143-3"} <= set(decoders)
    assert any("'broken-decoder' skipped" in r.getMessage() for r in caplog.records)
    assert list(discover_decoders("sparkplug-b")) == ["sparkplug-b"]
