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


# --- site files as QGIS, geojson.io and Google Earth write them (fixtures in tests/kernel/sitefiles) ---

from pathlib import Path  # noqa: E402

from sitepulse.sitefile import load_site_file  # noqa: E402

FIXTURES = Path(__file__).parent / "sitefiles"
DRAWN = [("north-pit", "North pit", "load", "load"), ("crusher", "Crusher", "crusher", "dump"),
         ("haul-road-a", "Haul road A", "road", "road"), ("stockpile-2", "Stockpile 2", "stockpile", "dump"),
         ("blast-area-7", "Blast area 7", "blast", "restricted")]


@pytest.mark.parametrize("name", ["qgis_sweref99.geojson", "geojson_io.geojson", "google_earth.kml"])
def test_files_as_tools_write_them_keep_the_drawn_names_and_kinds(name: str) -> None:
    site = load_site_file(FIXTURES / name)
    assert [(z.id, z.name, z.kind, z.type.value) for z in site.zones] == DRAWN
    # the projected QGIS file lands on the same corners as the WGS84 ones (within a millimetre or so)
    lon, lat = site.zones[0].polygon[0]
    assert abs(lon - 12.08) < 1e-7 and abs(lat - 57.504) < 1e-7
    area = site.local_polygon(site.zones[1]).area  # crusher: 0.0015 x 0.0008 deg at 57.5 N
    assert 7_900 < area < 8_100


def test_qgis_limits_and_explicit_ids_are_kept() -> None:
    site = load_site_file(FIXTURES / "qgis_sweref99.geojson")
    assert [z.speed_limit_kmh for z in site.zones] == [15, 10, 30, None, None]
    doc = json.loads((FIXTURES / "geojson_io.geojson").read_text())
    doc["features"][0]["properties"]["id"] = "pit-1"
    assert parse_site(json.dumps(doc)).zones[0].id == "pit-1"


def test_stored_site_round_trips_with_its_kinds() -> None:
    from sitepulse.sitefile import SiteConfig

    site = load_site_file(FIXTURES / "google_earth.kml")
    again = SiteConfig.model_validate(site.model_dump(mode="json"))
    assert again == site and again.zones[1].kind == "crusher"


def _fc(*features: dict) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def _poly(name: str | None, ring: list, kind: str | None = "load") -> dict:
    props = {k: v for k, v in (("name", name), ("kind", kind)) if v is not None}
    return {"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [ring]}}


CLOSED = SQUARE + [SQUARE[0]]
FAR = [[p[1], p[0]] for p in CLOSED]  # lon and lat swapped: 59 E, 18 N


@pytest.mark.parametrize(("text", "lines"), [
    (_fc(_poly("Pit", CLOSED, "quarry")),
     ["feature 0 'Pit': unknown kind 'quarry'; kinds accepted: load, dump, crusher, stockpile, workshop, "
      "parking, road, blast, no-go"]),
    (_fc(_poly("Pit", SQUARE)), ["feature 0 'Pit': polygon is not closed"]),
    (_fc(_poly("Bow tie", [[18.0, 59.0], [18.002, 59.001], [18.002, 59.0], [18.0, 59.001], [18.0, 59.0]])),
     ["feature 0 'Bow tie': polygon crosses itself"]),
    (_fc(_poly("Pit", CLOSED), _poly("Far", FAR, "dump"), _poly("Pad", CLOSED, "parking")),
     ["feature 1 'Far': lies 6,122 km from the rest of the site"]),
    (_fc(_poly("Pit", CLOSED), _poly("pit", CLOSED, "dump")),
     ["feature 1 'pit': name 'pit' is used again (first by feature 0 'Pit')"]),
    (_fc(), ["the file has no zones"]),
    (_fc(_poly(None, CLOSED, None)), ["feature 0: no kind; set property 'kind' to one of: load"]),
    (_fc(_poly("A", SQUARE), _poly("B", CLOSED, "hole")),  # two problems: two lines, each naming its feature
     ["feature 0 'A': polygon is not closed", "feature 1 'B': unknown kind 'hole'"]),
    ("<kml><Document><Placemark><name>Pin</name><Point><coordinates>18,59,0</coordinates></Point>"
     "</Placemark></Document></kml>", ["placemark 0 'Pin': not a polygon"]),
    ("<kml><Document><Placemark>", ["not valid KML"]),
    ('{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:999999"}}, '
     '"features": []}', ["crs 'EPSG:999999' is not a coordinate reference system pyproj knows"]),
])
def test_bad_drawn_files_give_one_line_per_problem(text: str, lines: list[str]) -> None:
    with pytest.raises(SitePulseError) as caught:
        parse_site(text, source="zones.geojson")
    got = str(caught.value).split("\n")
    assert len(got) == len(lines), got
    for line, expected in zip(got, lines, strict=True):
        assert line.startswith("zones.geojson: " + expected), line


def test_yaml_zones_take_any_kind_too() -> None:
    site = parse_site(f"zones: [{{id: c, kind: Crusher, polygon: {SQUARE}}}, {{id: b, type: No Go, "
                      f"polygon: {SQUARE}}}]")
    assert [(z.kind, z.type) for z in site.zones] == [("crusher", ZoneType.dump), ("no-go", ZoneType.restricted)]
    with pytest.raises(SitePulseError, match="zones.0.type: unknown kind 'pit'; kinds accepted: load"):
        parse_site(f"zones: [{{id: c, kind: pit, polygon: {SQUARE}}}]", source="s.yaml")


# --- outlines as drawn: small self-crossings are repaired with a warning, large ones refused ---

M_LAT = 1 / 111_320  # a metre north in degrees
M_LON = M_LAT / 0.515  # a metre east at 59 N (cos 59 = 0.515)
# the quarry's outline: a 114 x 111 m pit whose closing corner was surveyed 8 cm past the first edge, so the
# closing edge crosses the first one (the real zone file that was refused whole with 422)
CROSSED = SQUARE + [[18.0 + 0.08 * M_LON, 59.0 - 0.08 * M_LAT]]


def _geojson_zone(name: str, ring: list) -> str:
    return _fc(_poly(name, ring + [ring[0]]), _poly("Crusher", [[p[0] + 0.004, p[1]] for p in CLOSED], "crusher"))


@pytest.mark.parametrize("form", ["yaml", "geojson"])
def test_a_closing_corner_crossing_by_8_cm_is_repaired_with_a_warning_naming_zone_and_corner(form: str) -> None:
    text = (f"zones: [{{id: north-pit, name: North pit, type: load, polygon: {CROSSED}}}]" if form == "yaml"
            else _geojson_zone("North pit", CROSSED))
    site = parse_site(text, source="quarry")
    pit = site.zones[0]
    polygon = site.local_polygon(pit)
    assert polygon.is_valid
    assert 12_500 < polygon.area < 13_100  # one polygon of the drawn area (about 114.9 m x 111.3 m)
    assert site.warnings == ["zone 'north-pit' (North pit): polygon crossed itself near corner 5 of 5 (18.0000014, "
                             "58.9999993) by 8 cm (self-intersection); repaired, the zone keeps 12,800 m2"]
    # what is stored is the repaired outline: read back, nothing is repaired again
    from sitepulse.sitefile import SiteConfig

    assert SiteConfig.model_validate(site.model_dump(mode="json")).warnings == []


def test_a_zero_width_spike_under_a_metre_is_repaired() -> None:
    east = [18.002, 59.0005]
    spike = SQUARE[:2] + [east, [east[0] + 0.6 * M_LON, east[1]], east] + SQUARE[2:]  # out 60 cm and back
    site = parse_site(f"zones: [{{id: pad, type: parking, polygon: {spike}}}]")
    polygon = site.local_polygon(site.zones[0])
    assert polygon.is_valid and polygon.bounds[2] < site.local_polygon(
        parse_site(f"zones: [{{id: pad, type: parking, polygon: {SQUARE}}}]").zones[0]).bounds[2] + 0.01
    assert len(site.warnings) == 1 and "zone 'pad': polygon crossed itself near corner 4 of 7" in site.warnings[0]


@pytest.mark.parametrize("form", ["yaml", "geojson"])
def test_a_crossing_of_metres_is_still_refused_with_one_line(form: str) -> None:
    crossed = SQUARE + [[18.0 + 5 * M_LON, 59.0 - 5 * M_LAT]]  # 5 m past the first edge: a shape to redraw
    text = (f"zones: [{{id: north-pit, type: load, polygon: {crossed}}}]" if form == "yaml"
            else _geojson_zone("North pit", crossed))
    with pytest.raises(SitePulseError) as caught:
        parse_site(text, source="quarry")
    message = str(caught.value)
    assert "\n" not in message
    where = "zones.0: zone 'north-pit'" if form == "yaml" else "feature 0 'North pit'"
    assert message.startswith(f"quarry: {where}: polygon crosses itself near corner "), message
    assert "redraw it (defects under 1 m are repaired)" in message


def test_a_valid_outline_has_no_warnings() -> None:
    assert parse_site(f"zones: [{{id: z, type: dump, polygon: {SQUARE}}}]").warnings == []


def test_a_repair_is_logged_where_the_file_is_read(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="sitepulse.sitefile"):
        parse_site(f"zones: [{{id: north-pit, type: load, polygon: {CROSSED}}}]", source="quarry.yaml")
    assert [r.getMessage() for r in caplog.records] == [
        "quarry.yaml: zone 'north-pit': polygon crossed itself near corner 5 of 5 (18.0000014, 58.9999993) by 8 cm "
        "(self-intersection); repaired, the zone keeps 12,800 m2"]
