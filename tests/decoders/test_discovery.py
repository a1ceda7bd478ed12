"""Decoders are found like services: entry points, limited by SITEPULSE_LOAD_DECODERS, mistakes in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from decoders.config import load_entries
from decoders.discovery import discover_decoders
from decoders.front import load_front
from ingest.contract import Decoder
from sitepulse.errors import ConfigError, SitePulseError
from sitepulse.settings import load_settings


def test_built_in_decoders_register_through_entry_points() -> None:
    found = discover_decoders()
    assert {"mapped-json", "sparkplug-b", "iso15143-3"} <= set(found)
    assert {found[n].transport for n in ("mapped-json", "sparkplug-b")} == {"mqtt"}
    assert found["iso15143-3"].transport == "http"


def test_load_decoders_limits_and_names_what_is_missing() -> None:
    assert set(discover_decoders("sparkplug-b")) == {"sparkplug-b"}
    with pytest.raises(SitePulseError, match=r"not installed: \['nope'\]"):
        discover_decoders("sparkplug-b,nope")


def test_a_route_to_a_decoder_that_is_not_loaded_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text('[[route]]\ndecoder = "mapped-json"\nsite = "s"\ntopics = ["t/+"]\n'
                    '[route.options.fields]\nlat = "a"\n')
    settings = load_settings(decoders_file=path, load_decoders="sparkplug-b")
    with pytest.raises(ConfigError, match="decoder 'mapped-json' is not installed or not loaded"):
        load_front(settings, Decoder())
    front = load_front(load_settings(decoders_file=path), Decoder())
    assert front.topic_filters == ("t/+",)


@pytest.mark.parametrize(("text", "message"), [
    ("[[route]\n", "is not valid TOML"),
    ('[[feed]]\ndecoder = "mapped-json"\nsite = "s"\n', "is a mqtt decoder; list it as a route table"),
    ('[[route]]\ndecoder = "iso15143-3"\nsite = "s"\ntopics = ["x"]\n', "is a http decoder; list it as a feed"),
    ("[other]\n", "unknown table(s) ['other']"),
])
def test_file_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_entries(path, discover_decoders())
    assert message in str(caught.value) and "\n" not in str(caught.value).strip()
