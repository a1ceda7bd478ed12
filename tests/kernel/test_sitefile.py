"""The site file contract: YAML and GeoJSON give the same site; mistakes are one clear line."""

import json

import pytest

from sitepulse.errors import SitePulseError
from sitepulse.sitefile import ZoneType, parse_site

SQUARE = [[18.0, 59.0], [18.002, 59.0], [18.002, 59.001], [18.0, 59.001]]


def test_yaml_and_geojson_describe_the_same_site() -> None:
    yaml_site = parse_site(f"""
name: Test pit
zones:
  - {{id: load-a, type: load, speed_limit_kmh: 15, polygon: {SQUARE}}}
machines:
  - {{id: H1, kind: hauler, model: A30G, rated_payload_kg: 28000}}
""")
    geojson_site = parse_site(
        json.dumps(
            {
                "type": "FeatureCollection",
                "name": "Test pit",
                "machines": [{"id": "H1", "kind": "hauler", "model": "A30G", "rated_payload_kg": 28000}],
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Polygon", "coordinates": [SQUARE + [SQUARE[0]]]},
                        "properties": {"id": "load-a", "type": "load", "speed_limit_kmh": 15},
                    }
                ],
            }
        )
    )
    assert yaml_site == geojson_site
    assert yaml_site.zones[0].type is ZoneType.load


def test_local_frame_areas_are_metric() -> None:
    site = parse_site(f"zones: [{{id: z, type: dump, polygon: {SQUARE}}}]")
    area = site.local_polygon(site.zones[0]).area
    # 0.002 deg lon x 0.001 deg lat at 59 N: about 114.9 m x 111.3 m
    assert 12_500 < area < 13_100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zones: [{id: z, type: quarry, polygon: []}]", "zones.0.type"),
        (
            f"zones: [{{id: z, type: load, polygon: {SQUARE}}}, {{id: z, type: dump, polygon: {SQUARE}}}]",
            "zone id 'z' appears twice",
        ),
        ("zones: [{id: z, type: load, polygon: [[0, 0], [1, 1]]}]", "zones.0.polygon"),
        ("zones: [{id: z, type: load, polygon: [[0, 95], [1, 1], [2, 0]]}]", "zones.0.polygon"),
        ("zones: [{id: z, type: load, polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]}]", "crosses itself"),
        ("machines: [{id: 'bad id!', kind: hauler}]", "machines.0.id"),
        ("- just\n- a list", "expected a mapping"),
        ("{unclosed", "not valid YAML or JSON"),
        (
            '{"type": "FeatureCollection", "features": [{"geometry": {"type": "Point"}}]}',
            "unsupported geometry",
        ),
    ],
)
def test_mistakes_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(SitePulseError) as caught:
        parse_site(text, source="site.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("site.yaml: ")
    assert "\n" not in str(caught.value)
