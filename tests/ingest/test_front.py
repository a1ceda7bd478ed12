"""Ingest finds the decoder layer through the ``sitepulse.ingest.front`` entry point; it imports no decoder."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from ingest import front
from ingest.contract import Decoder
from sitepulse.errors import ConfigError
from sitepulse.settings import load_settings

ROUTES = '[[route]]\ndecoder = "mapped-json"\nsite = "s"\ntopics = ["t/+"]\n[route.options.fields]\nlat = "a"\n'


def test_the_installed_front_is_the_decoders_one_built_from_the_routes(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(ROUTES)
    loaded = front.load_front(load_settings(decoders_file=path), Decoder())
    assert type(loaded).__module__ == "decoders.front"
    assert loaded.topic_filters == ("t/+",)


@pytest.mark.parametrize(("installed", "message"), [
    ([], "none is installed"),
    ([EntryPoint("a", "decoders.front:load_front", front.ENTRY_POINT_GROUP),
      EntryPoint("b", "decoders.front:load_front", front.ENTRY_POINT_GROUP)], r"2 are: \['a', 'b'\]"),
])
def test_no_front_or_two_is_a_configuration_error_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: list[EntryPoint], message: str
) -> None:
    path = tmp_path / "d.toml"
    path.write_text(ROUTES)
    monkeypatch.setattr(front, "entry_points", lambda group: installed if group == front.ENTRY_POINT_GROUP else [])
    expected = ("^SITEPULSE_DECODERS_FILE: needs one decoder layer in the sitepulse.ingest.front entry point group; "
                f"{message}$")
    with pytest.raises(ConfigError, match=expected):
        front.load_front(load_settings(decoders_file=path), Decoder())
