"""Property tests of the parsers outside ingest: site files (YAML/GeoJSON) and the settings loader.

Whatever the input, the answer is a ``SitePulseError`` whose message is one line naming the problem,
never another exception and never a traceback. (The MQTT payload decoder has its own property tests
in ``tests/ingest/test_property.py`` and an atheris run in ``test_fuzz_decoder.py``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitepulse.errors import SitePulseError
from sitepulse.settings import Settings, load_settings
from sitepulse.sitefile import parse_site

ROOT = Path(__file__).resolve().parents[2]
GOOD = yaml.safe_load((ROOT / "simulators" / "sites" / "demo_quarry.yaml").read_text())
EXAMPLES = 300

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=16)


def _judge(text: str | bytes) -> str:
    try:
        parse_site(text, source="site file")
    except SitePulseError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
        return "rejected"
    return "accepted"


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_a_site_file_or_one_line_error(raw: bytes) -> None:
    _judge(raw)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_site_file_or_one_line_error(text: str) -> None:
    _judge(text)


def _mutations() -> st.SearchStrategy[dict]:
    """The demo quarry with one part replaced by arbitrary JSON: deep, plausible mistakes."""
    def mutate(args: tuple[str, int, str, object]) -> dict:
        section, index, key, value = args
        doc = json.loads(json.dumps(GOOD))
        items = doc.get(section)
        if isinstance(items, list) and items:
            item = items[index % len(items)]
            if isinstance(item, dict):
                item[key if key else next(iter(item))] = value
        else:
            doc[section] = value
        return doc
    return st.tuples(st.sampled_from(["zones", "machines", "paths", "shifts", "name", "timezone"]),
                     st.integers(0, 20), st.sampled_from(["", "id", "type", "polygon", "points", "kind",
                                                          "rated_payload_kg", "speed_limit_kmh", "start"]),
                     json_values).map(mutate)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations(), st.booleans())
def test_mutated_site_files_are_accepted_or_one_line_error(doc: dict, as_geojson: bool) -> None:
    text = json.dumps(doc) if as_geojson else yaml.safe_dump(doc)
    _judge(text)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(Settings.model_fields)), st.text(max_size=40))
def test_any_setting_value_is_accepted_or_one_line_error_naming_it(name: str, value: str) -> None:
    try:
        load_settings(**{name: value})
    except SitePulseError as exc:
        message = str(exc)
        assert "\n" not in message and name.upper() in message.upper(), message
