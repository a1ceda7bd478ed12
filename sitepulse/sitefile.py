"""The site file contract: zones, haul paths and machines of one site, from YAML or GeoJSON.

One model serves everyone who reads a site file (the API's site load, the services, the
simulator), so a file that loads in one place loads everywhere. Coordinates are WGS84
``[lon, lat]`` pairs, GeoJSON order.

YAML shape::

    name: North Quarry
    timezone: UTC
    shifts: [{name: day, start: "06:00", end: "18:00"}, {name: night, start: "18:00", end: "06:00"}]
    zones:
      - {id: load-a, type: load, name: Load area A, speed_limit_kmh: 15,
         polygon: [[lon, lat], ...]}
    paths:            # optional haul-road centrelines (simulator routes, congestion segments)
      - {id: main-road, points: [[lon, lat], ...], speed_limit_kmh: 40}
    machines:
      - {id: HX-01, kind: hauler, model: Volvo A30G, rated_payload_kg: 28000}

GeoJSON shape (as QGIS, geojson.io and hand-written files have it): a FeatureCollection
whose Polygon (or one-part MultiPolygon) features are zones. ``properties.name`` is the
zone's name, ``properties.id`` (or the feature's ``id``) its stable id, else one is derived
from the name; ``properties.kind`` or ``properties.type`` is its kind (``KINDS``); other
properties (QGIS ``fid``, geojson.io styles) are ignored. LineString features with
``"path": true`` are paths. A ``crs`` member (QGIS writes one) may name a projected CRS;
coordinates are then projected back to WGS84 with pyproj. Foreign members ``name``,
``timezone``, ``shifts``, ``machines`` at the top level.

KML (Google Earth): every Placemark with a Polygon is a zone, named by its ``<name>``; the
kind comes from ExtendedData ``kind``/``type``, else from the enclosing Folder's name.

A bad file raises one SitePulseError with one line per problem, each naming the feature,
and nothing is stored (the registry saves only a file that parsed). An outline that crosses
itself by under a metre (a closing corner surveyed a few centimetres past the first edge, a
zero-width spike) is repaired instead, and ``SiteConfig.warnings`` says what was repaired,
naming the zone and the corner; parse_site also logs it.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import time
from enum import StrEnum
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import available_timezones

import numpy as np
import shapely
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely import Polygon
from shapely.validation import explain_validity

from sitepulse.errors import SitePulseError
from sitepulse.geo import LocalFrame

log = logging.getLogger(__name__)

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
LonLat = tuple[Annotated[float, Field(ge=-180, le=180)], Annotated[float, Field(ge=-90, le=90)]]


class ZoneType(StrEnum):
    load = "load"
    dump = "dump"
    road = "road"
    parking = "parking"
    restricted = "restricted"
    workshop = "workshop"


# The kinds a site manager draws, and the zone type each behaves as in the services: a crusher or a
# stockpile is where loads are tipped, a blast area or a no-go zone is closed to traffic.
KINDS: dict[str, ZoneType] = {
    "load": ZoneType.load, "dump": ZoneType.dump, "crusher": ZoneType.dump, "stockpile": ZoneType.dump,
    "workshop": ZoneType.workshop, "parking": ZoneType.parking, "road": ZoneType.road,
    "blast": ZoneType.restricted, "no-go": ZoneType.restricted, "restricted": ZoneType.restricted,
}
KIND_LIST = ", ".join(k for k in KINDS if k != "restricted")
# a zone farther than this from the middle of the others is a mistake (lon/lat swapped, wrong CRS)
MAX_SITE_EXTENT_M = 50_000.0
# a drawn outline that crosses itself (or doubles back in a zero-width spike) by less than this is a slip of the
# mouse or a GNSS survey's closing point, and is repaired; more is a shape to redraw
REPAIRABLE_DEFECT_M = 1.0


def _polygons_of(geometry: Any) -> list[Polygon]:
    """The polygonal parts of what shapely.make_valid returns (a Polygon, a MultiPolygon or a collection)."""
    if isinstance(geometry, Polygon):
        return [] if geometry.is_empty else [geometry]
    return [p for part in getattr(geometry, "geoms", []) for p in _polygons_of(part)]


def _edge_keys(ring: list[LonLat]) -> list[tuple[LonLat, LonLat]]:
    """Each edge of a closed ring as its two corners in order, whichever way round the ring runs."""
    return [tuple(sorted(edge)) for edge in zip(ring, ring[1:] + ring[:1], strict=True)]


def _farthest_m(ring: list[LonLat], ring_xy: np.ndarray, other: list[LonLat], other_xy: np.ndarray,
                steps: int = 10) -> float:
    """How far ``ring`` (closed; x/y in metres beside it), each edge cut in ``steps``, strays from ``other``'s edges.

    With both directions this is ``shapely.hausdorff_distance(densify=1 / steps)`` (GEOS compares every point with
    every edge: 11 s for a 10,000-corner zone), measured from the edges ``other`` lacks only (a shared edge is 0 m
    away) to a tree of ``other``'s edges."""
    shared = set(_edge_keys(other))
    changed = np.array([key not in shared for key in _edge_keys(ring)])
    if not changed.any():
        return 0.0
    start, end = ring_xy[changed], np.roll(ring_xy, -1, axis=0)[changed]
    fractions = np.arange(steps)[:, None, None] / steps
    points = shapely.points((start + (end - start) * fractions).reshape(-1, 2))
    edges = shapely.linestrings(np.stack([other_xy, np.roll(other_xy, -1, axis=0)], axis=1))
    _, distances = shapely.STRtree(edges).query_nearest(points, return_distance=True, all_matches=False)
    return float(distances.max())


def repaired_ring(ring: list[LonLat]) -> tuple[list[LonLat], str | None]:
    """The ring of a valid polygon: as drawn, or repaired with shapely's make_valid when it crosses itself (or
    spikes) by under ``REPAIRABLE_DEFECT_M``; then also what was repaired, naming the corner. The repair keeps one
    polygon, the largest part, so the zone keeps its intended area. A larger defect raises a ValueError."""
    polygon = Polygon(ring)
    if polygon.is_valid:
        return ring, None
    reason = explain_validity(polygon)
    lons, lats = zip(*ring, strict=True)
    frame = LocalFrame((min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2)
    at = re.search(r"\[([-\d.e+]+) ([-\d.e+]+)\]", reason)
    spot = (float(at.group(1)), float(at.group(2))) if at else ring[0]
    ring_x, ring_y = frame.to_xy(list(lons), list(lats))
    spot_x, spot_y = frame.to_xy([spot[0]], [spot[1]])
    corner = int(np.argmin(np.hypot(np.asarray(ring_x) - spot_x[0], np.asarray(ring_y) - spot_y[0])))
    where = f"near corner {corner + 1} of {len(ring)} ({ring[corner][0]:.7f}, {ring[corner][1]:.7f})"
    kind = reason.split("[")[0].strip().lower()
    parts = _polygons_of(shapely.make_valid(polygon, method="structure", keep_collapsed=False))
    if not parts:
        raise ValueError(f"polygon has no area ({kind} {where}); redraw it")
    best = max(parts, key=lambda part: part.area)
    fixed = [(float(x), float(y)) for x, y in best.exterior.coords[:-1]]
    fixed_x, fixed_y = frame.to_xy([p[0] for p in fixed], [p[1] for p in fixed])
    drawn, repaired = np.c_[ring_x, ring_y], np.c_[fixed_x, fixed_y]
    ring = [tuple(p) for p in ring]
    defect_m = max(_farthest_m(ring, drawn, fixed, repaired), _farthest_m(fixed, repaired, ring, drawn))
    if defect_m >= REPAIRABLE_DEFECT_M:
        raise ValueError(f"polygon crosses itself {where}, by {defect_m:,.1f} m ({kind}); redraw it (defects under "
                         f"{REPAIRABLE_DEFECT_M:g} m are repaired)")
    area = Polygon(np.c_[fixed_x, fixed_y]).area
    return fixed, (f"polygon crossed itself {where} by {defect_m * 100:.0f} cm ({kind}); repaired, the zone keeps "
                   f"{area:,.0f} m2")


def normalise_kind(value: Any) -> str:
    """'No Go', 'no_go' and 'NO-GO' are the same kind."""
    return re.sub(r"[\s_]+", "-", str(value).strip().lower())


def zone_type_of(kind: Any) -> ZoneType:
    """The service-level zone type of a drawn kind, or a ValueError listing the kinds accepted."""
    try:
        return KINDS[normalise_kind(kind)]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; kinds accepted: {KIND_LIST}") from None


def slug(name: str) -> str:
    """A stable zone id from a drawn name: 'Haul road A' -> 'haul-road-a' (ASCII, <= 64 chars)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:64].strip("-")


class MachineKind(StrEnum):
    hauler = "hauler"
    loader = "loader"
    excavator = "excavator"
    dozer = "dozer"
    other = "other"


class Zone(BaseModel):
    """A polygon of one type; services test positions against it in the site's local frame."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier
    type: ZoneType
    kind: str = ""  # as drawn (crusher, blast, ...); ``type`` is how the services treat it
    name: str = ""
    speed_limit_kmh: float | None = Field(None, gt=0, le=200)
    polygon: list[LonLat] = Field(min_length=3)

    @model_validator(mode="before")
    @classmethod
    def _kind_or_type(cls, data: Any) -> Any:
        """A zone may give its kind as ``kind`` or ``type``; both end up set."""
        if isinstance(data, dict):
            kind, kind_type = data.get("kind"), data.get("type")
            if kind_type is None and kind:
                data = {**data, "type": kind}
            elif not kind and isinstance(kind_type, str):
                data = {**data, "kind": kind_type}
        return data

    @field_validator("kind", mode="before")
    @classmethod
    def _normal_kind(cls, value: Any) -> Any:
        return normalise_kind(value) if isinstance(value, str) else value

    @field_validator("type", mode="before")
    @classmethod
    def _type_of_kind(cls, value: Any) -> Any:
        return value if isinstance(value, ZoneType) or value is None else zone_type_of(value)

    @property
    def label(self) -> str:
        """What a person calls the zone: its drawn name, else its id."""
        return self.name or self.id

    @field_validator("polygon")
    @classmethod
    def _open_ring(cls, ring: list[LonLat]) -> list[LonLat]:
        if len(ring) > 3 and ring[0] == ring[-1]:
            ring = ring[:-1]
        if len(ring) < 3:
            raise ValueError("a polygon needs at least 3 distinct corners")
        return ring

    @model_validator(mode="after")
    def _valid_polygon(self) -> Zone:
        """A small self-crossing is repaired (the warning kept for whoever loads the file); a large one refused."""
        try:
            ring, repair = repaired_ring(self.polygon)
        except ValueError as exc:
            raise ValueError(f"zone {self.id!r}: {exc}") from None
        if repair is not None:
            self.polygon = ring
            self._repair = f"zone {self.id!r}{f' ({self.name})' if self.name else ''}: {repair}"
        return self

    _repair: str | None = PrivateAttr(default=None)


class HaulPath(BaseModel):
    """A road centreline; the simulator drives along paths and traffic uses them as segments."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier
    points: list[LonLat] = Field(min_length=2)
    name: str = ""
    speed_limit_kmh: float | None = Field(None, gt=0, le=200)


class Machine(BaseModel):
    """A machine the site expects; birth messages may add or update machines at run time."""

    model_config = ConfigDict(extra="allow")

    id: Identifier
    kind: MachineKind
    model: str = ""
    rated_payload_kg: float | None = Field(None, gt=0, le=1_000_000)


class Shift(BaseModel):
    """A named daily shift in the site's time zone; an end before the start wraps midnight."""

    name: str
    start: time
    end: time


DEFAULT_SHIFTS = [
    Shift(name="day", start=time(6), end=time(18)),
    Shift(name="night", start=time(18), end=time(6)),
]


class SiteConfig(BaseModel):
    """Everything SitePulse knows about a site's layout and fleet."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    timezone: str = "UTC"
    shifts: list[Shift] = Field(default_factory=lambda: list(DEFAULT_SHIFTS))
    zones: list[Zone] = Field(default_factory=list)
    paths: list[HaulPath] = Field(default_factory=list)
    machines: list[Machine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> SiteConfig:
        for label, items in (("zone", self.zones), ("path", self.paths), ("machine", self.machines)):
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    raise ValueError(f"{label} id {item.id!r} appears twice")
                seen.add(item.id)
        return self

    @property
    def warnings(self) -> list[str]:
        """What was repaired while the file was read (a zone's small self-crossing), one line each: the file was
        accepted, but whoever loaded it should hear what changed."""
        return [zone._repair for zone in self.zones if zone._repair]

    @cached_property
    def frame(self) -> LocalFrame:
        """The site's local metric frame, centred on the middle of its zones and paths."""
        points = [p for z in self.zones for p in z.polygon] + [p for h in self.paths for p in h.points]
        if not points:
            return LocalFrame(0.0, 0.0)
        lons, lats = zip(*points, strict=True)
        return LocalFrame((min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2)

    def local_polygon(self, zone: Zone) -> Polygon:
        """The zone as a shapely polygon in local metres."""
        lons, lats = zip(*zone.polygon, strict=True)
        x, y = self.frame.to_xy(list(lons), list(lats))
        return Polygon(list(zip(x, y, strict=True)))

    def machine(self, machine_id: str) -> Machine | None:
        return next((m for m in self.machines if m.id == machine_id), None)


ZONE_FIELDS = {"name", "speed_limit_kmh"}  # the zone properties read; QGIS fid, geojson.io styles are not
WGS84 = CRS.from_epsg(4326)


class SiteFileProblems(ValueError):
    """Every problem found in one file, one line each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _label(index: int, name: str | None) -> str:
    return f"feature {index} {name!r}" if name else f"feature {index}"


def _to_wgs84(doc: dict[str, Any]) -> Transformer | None:
    """The transformer from the file's declared CRS (QGIS writes ``crs``), None when it is WGS84."""
    crs = doc.get("crs")
    if not crs:
        return None
    name = (crs.get("properties") or {}).get("name") if isinstance(crs, dict) else crs
    try:
        declared = CRS.from_user_input(name)
    except (CRSError, TypeError):
        raise SiteFileProblems([f"crs {name!r} is not a coordinate reference system pyproj knows"]) from None
    if declared.is_geographic and declared.equals(WGS84, ignore_axis_order=True):
        return None
    return Transformer.from_crs(declared, WGS84, always_xy=True)


def _ring(coords: Any, transformer: Transformer | None) -> list[list[float]]:
    """A ring as [lon, lat] pairs (altitude dropped), projected to WGS84 when the file is projected."""
    points = [[float(c) for c in p[:2]] for p in coords]
    if transformer is not None and points:
        lon, lat = transformer.transform([p[0] for p in points], [p[1] for p in points])
        points = [[float(x), float(y)] for x, y in zip(lon, lat, strict=True)]
    return points


def _polygon_rings(geometry: dict[str, Any], where: str, problems: list[str]) -> Any:
    """The outer ring of a Polygon or of a one-part MultiPolygon (QGIS writes MultiPolygon by default)."""
    coords = geometry.get("coordinates")
    if geometry.get("type") == "MultiPolygon":
        if not isinstance(coords, list) or len(coords) != 1:
            parts = len(coords) if isinstance(coords, list) else 0
            problems.append(f"{where}: a MultiPolygon of {parts} parts; draw one polygon per zone")
            return None
        coords = coords[0]
    if not isinstance(coords, list) or not coords or not isinstance(coords[0], list):
        problems.append(f"{where}: polygon has no coordinates")
        return None
    return coords[0]


def _zone_from(props: dict[str, Any], ring: Any, where: str, index: int, closed_required: bool,
               transformer: Transformer | None, problems: list[str]) -> dict[str, Any] | None:
    """One zone dict from a drawn polygon, or its problems appended."""
    if isinstance(ring, list) and (problem := _too_many_corners(ring)) is not None:
        problems.append(f"{where}: {problem}")  # before any geometry is built from it
        return None
    try:
        points = _ring(ring, transformer)
    except (TypeError, ValueError, IndexError):
        problems.append(f"{where}: coordinates are not [lon, lat] number pairs")
        return None
    if closed_required and len(points) >= 2 and points[0] != points[-1]:
        problems.append(f"{where}: polygon is not closed (its last corner must repeat the first)")
        return None
    distinct = {tuple(p) for p in points}
    if len(distinct) < 3:
        problems.append(f"{where}: a polygon needs at least 3 distinct corners")
        return None
    if any(not (-180 <= x <= 180 and -90 <= y <= 90) for x, y in points):
        problems.append(f"{where}: coordinates outside WGS84 longitude/latitude (is a projected crs missing?)")
        return None
    kind = props.get("kind") or props.get("type")
    if kind is None or str(kind).strip() == "":
        problems.append(f"{where}: no kind; set property 'kind' to one of: {KIND_LIST}")
        return None
    try:
        zone_type_of(kind)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    name = str(props.get("name") or "").strip()
    zone_id = props.get("id")
    zone_id = str(zone_id) if zone_id not in (None, "") else (slug(name) or f"zone-{index}")
    zone = {k: props[k] for k in ZONE_FIELDS if props.get(k) is not None}
    return {**zone, "id": zone_id, "name": name, "kind": kind, "polygon": points[:-1] if points[0] == points[-1]
            else points}


def _from_geojson(doc: dict[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    transformer = _to_wgs84(doc)
    zones, paths = [], []
    features = doc.get("features")
    if not isinstance(features, list):
        raise SiteFileProblems(["a FeatureCollection needs a list of features"])
    for index, feature in enumerate(features):
        if not isinstance(feature, dict):
            problems.append(f"feature {index}: not a GeoJSON Feature object")
            continue
        geometry = feature.get("geometry") or {}
        props = dict(feature.get("properties") or {})
        if "id" not in props and feature.get("id") is not None:
            props["id"] = feature["id"]
        where = _label(index, props.get("name"))
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        if kind in ("Polygon", "MultiPolygon"):
            ring = _polygon_rings(geometry, where, problems)
            zone = None if ring is None else _zone_from(props, ring, where, index, True, transformer, problems)
            if zone is not None:
                zones.append((where, zone))
        elif kind == "LineString" and props.pop("path", False):
            points = geometry.get("coordinates")
            try:
                points = _ring(points, transformer)
            except (TypeError, ValueError, IndexError):
                problems.append(f"{where}: coordinates are not [lon, lat] number pairs")
                continue
            paths.append({"id": props.pop("id", f"path-{index}"), **props, "points": points})
        else:
            problems.append(f"{where}: unsupported geometry {kind!r} "
                            "(zones are Polygons, paths LineStrings with properties.path=true)")
    top = {k: v for k, v in doc.items() if k in {"name", "timezone", "shifts", "machines"}}
    return _checked(top, zones, paths, problems)


KML_NS = "{http://www.opengis.net/kml/2.2}"


def _kml_text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _from_kml(text: str | bytes) -> dict[str, Any]:
    """Zones from a Google Earth KML: Placemarks with a Polygon, in any Document/Folder nesting."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise SiteFileProblems([f"not valid KML ({exc})"]) from None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    problems: list[str] = []
    zones: list[tuple[str, dict[str, Any]]] = []
    document = root.find(f"{ns}Document")
    parents = {child: parent for parent in root.iter() for child in parent}
    for index, placemark in enumerate(root.iter(f"{ns}Placemark")):
        name = _kml_text(placemark.find(f"{ns}name"))
        where = _label(index, name).replace("feature", "placemark", 1)
        polygons = list(placemark.iter(f"{ns}Polygon"))
        if len(polygons) != 1:
            if placemark.find(f".//{ns}Point") is not None or placemark.find(f".//{ns}LineString") is not None:
                problems.append(f"{where}: not a polygon (zones are drawn with Google Earth's Add Polygon)")
            elif polygons:
                problems.append(f"{where}: {len(polygons)} polygons in one placemark; draw one polygon per zone")
            else:
                problems.append(f"{where}: no polygon")
            continue
        coords = _kml_text(polygons[0].find(f"{ns}outerBoundaryIs/{ns}LinearRing/{ns}coordinates"))
        try:
            ring = [[float(v) for v in triple.split(",")[:2]] for triple in coords.split()]
        except ValueError:
            problems.append(f"{where}: coordinates are not lon,lat[,alt] triples")
            continue
        props: dict[str, Any] = {"name": name}
        for data in placemark.iter():
            key = data.get("name")
            if data.tag in (f"{ns}Data", f"{ns}SimpleData") and key in ("kind", "type", "id", "speed_limit_kmh"):
                value = _kml_text(data.find(f"{ns}value")) if data.tag == f"{ns}Data" else _kml_text(data)
                props[key] = value
        if not (props.get("kind") or props.get("type")):
            parent = parents.get(placemark)
            while parent is not None and parent.tag != f"{ns}Folder":
                parent = parents.get(parent)
            folder = _kml_text(parent.find(f"{ns}name")) if parent is not None else ""
            if normalise_kind(folder) in KINDS:
                props["kind"] = folder
        if props.get("speed_limit_kmh") in ("",):
            props.pop("speed_limit_kmh")
        zone = _zone_from(props, ring, where, index, True, None, problems)
        if zone is not None:
            zones.append((where, zone))
    top = {"name": _kml_text(document.find(f"{ns}name")).removesuffix(".kml")} if document is not None else {}
    return _checked(top, zones, [], problems)


def _checked(top: dict[str, Any], zones: list[tuple[str, dict[str, Any]]], paths: list[dict[str, Any]],
             problems: list[str]) -> dict[str, Any]:
    """File-level checks over the drawn zones: empty, duplicate names or ids, crossing, far outside the site."""
    if not zones and not paths and not problems:
        problems.append("the file has no zones (no Polygon features)")
    reported: set[str] = set()
    for key, what in (("name", "name"), ("id", "id")):
        first: dict[str, str] = {}
        for where, zone in zones:
            value = zone[key].casefold() if key == "name" else zone[key]
            if not value:
                continue
            if value in first and where not in reported:
                reported.add(where)
                problems.append(f"{where}: {what} {zone[key]!r} is used again (first by {first[value]}); "
                                f"zone {what}s must be unique")
            elif value not in first:
                first[value] = where
    bad_ids = [(w, z) for w, z in zones if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", z["id"])]
    problems += [f"{w}: id {z['id']!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
                 for w, z in bad_ids]
    if zones:
        cx = [sum(p[0] for p in z["polygon"]) / len(z["polygon"]) for _, z in zones]
        cy = [sum(p[1] for p in z["polygon"]) / len(z["polygon"]) for _, z in zones]
        mid_lon, mid_lat = sorted(cx)[len(cx) // 2], sorted(cy)[len(cy) // 2]
        frame = LocalFrame(mid_lat, mid_lon)
        for where, zone in zones:
            x, y = frame.to_xy([p[0] for p in zone["polygon"]], [p[1] for p in zone["polygon"]])
            polygon = Polygon(list(zip(x, y, strict=True)))
            try:
                repaired_ring([tuple(p) for p in zone["polygon"]])  # small defects are repaired with the zone
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            if shapely.distance(polygon, shapely.Point(0, 0)) > MAX_SITE_EXTENT_M:
                far = shapely.distance(polygon, shapely.Point(0, 0)) / 1000
                problems.append(f"{where}: lies {far:,.0f} km from the rest of the site (longitude and "
                                "latitude swapped, or another crs?)")
    if problems:
        raise SiteFileProblems(problems)
    return {**top, "zones": [z for _, z in zones], "paths": paths}


def _looks_like_xml(text: str | bytes) -> bool:
    head = text[:512].lstrip(b"\xef\xbb\xbf \t\r\n" if isinstance(text, bytes) else "\ufeff \t\r\n")
    return head[:1] in (b"<", "<")


# --- bounds on what a site file may hold: generous for drawn sites (a real quarry's zones have tens to a few
# thousand corners), small enough that a hostile file costs no more than seconds and its view no more than a few MB

MAX_SITE_FILE_BYTES = 5 * 1024 * 1024
MAX_NESTING = 32  # a GeoJSON MultiPolygon's corners sit 8 levels deep
MAX_ZONE_CORNERS = 10_000  # per zone or path (a 150,000-corner zone took 17 s to load and its view was 6 MB)
MAX_SITE_CORNERS = 100_000  # over all zones and paths of the file
MIN_ZONE_AREA_M2 = 1.0  # nothing a machine can be inside of is smaller
MAX_YAML_VALUES = 4 * MAX_SITE_CORNERS  # a corner is three: its list, longitude, latitude
TOO_DEEP = f"nested more than {MAX_NESTING} levels deep; a site file needs at most 8"
MAX_TEXT = 200  # characters of any name or text (a 1.1 MB site name was stored and sent to every viewer)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ten times faster on large files


def _read_document(text: str | bytes) -> Any:
    """The file's data: JSON (GeoJSON as QGIS writes it) with the json module, anything else as YAML."""
    if text.lstrip()[:1] in ("{", b"{"):
        try:
            doc = json.loads(text)
        except RecursionError:
            raise SiteFileProblems([TOO_DEEP]) from None
        except ValueError:
            return _read_yaml(text)  # YAML's flow style looks like JSON: {id: a}
        _check_nesting(doc)
        return doc
    return _read_yaml(text)


def _check_nesting(doc: Any) -> None:
    """At most ``MAX_NESTING`` levels, walked a level at a time without recursion."""
    level = [doc] if isinstance(doc, dict | list) else []
    for _ in range(MAX_NESTING):
        level = [child for value in level for child in (value.values() if isinstance(value, dict) else value)
                 if isinstance(child, dict | list)]
    if level:
        raise SiteFileProblems([TOO_DEEP])


def _read_yaml(text: str | bytes) -> Any:
    """YAML without aliases, nested at most ``MAX_NESTING`` levels, of at most ``MAX_YAML_VALUES`` values. An alias
    repeats a node wherever it is named, so a few aliases of aliases made a 521-byte file a 15.2 MB site; the
    composer recurses once per level, so 500 levels overflowed Python's stack; building each value costs about
    20 us, so a 5 MB list of numbers took half a minute. All three are checked on the parser's events first, which
    neither expand, recurse nor build, so a hostile file stops at its first alias, deepest level or extra value."""
    depth = values = 0
    try:
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            if isinstance(event, yaml.AliasEvent):
                raise SiteFileProblems([f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                                        "accepted in site files; write the value out"])
            if isinstance(event, yaml.NodeEvent):
                values += 1
                if values > MAX_YAML_VALUES:
                    raise SiteFileProblems([f"more than {MAX_YAML_VALUES:,} values; a site file of "
                                            f"{MAX_SITE_CORNERS:,} corners needs fewer"])
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    raise SiteFileProblems([f"line {event.start_mark.line + 1}: {TOO_DEEP}"])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 -- the safe loader (libyaml's when installed)
    except yaml.YAMLError as exc:
        problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SiteFileProblems([f"not valid YAML or JSON ({where}{problem or exc.__class__.__name__})"]) from None


def _corners(points: list[Any]) -> int:
    """Corners of a drawn line or outline; a closing corner repeating the first is not one more."""
    return len(points) - (len(points) > 1 and points[0] == points[-1])


def _too_many_corners(points: list[Any]) -> str | None:
    if (count := _corners(points)) <= MAX_ZONE_CORNERS:
        return None
    return (f"{count:,} corners; at most {MAX_ZONE_CORNERS:,} per zone or path (simplify the outline, e.g. QGIS "
            "Simplify with a tolerance of 0.1 m)")


def _check_corner_counts(doc: dict[str, Any]) -> None:
    """Corners per zone or path and per file, before any geometry is built from them."""
    problems: list[str] = []
    total = 0
    for key, field in (("zones", "polygon"), ("paths", "points")):
        items = doc.get(key)
        for index, item in enumerate(items if isinstance(items, list) else []):
            points = item.get(field) if isinstance(item, dict) else None
            if not isinstance(points, list):
                continue
            total += _corners(points)
            if (problem := _too_many_corners(points)) is not None:
                problems.append(f"{key}[{index}] {item.get('id', '')!r}: {problem}")
    if total > MAX_SITE_CORNERS and not problems:
        problems.append(f"{total:,} corners in all; at most {MAX_SITE_CORNERS:,} per site file")
    if problems:
        raise SiteFileProblems(problems)


@lru_cache(maxsize=1)
def known_time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _texts(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _texts(item, f"{where}[{i}]")


def _check_site_limits(site: SiteConfig) -> None:
    """The time zone is an IANA zone (``Mars/Olympus`` answered 404 on every report, ``../../etc/passwd`` a 500),
    every text (names, models, a machine's extra fields) at most ``MAX_TEXT`` characters, every zone has area."""
    if site.timezone not in known_time_zones():
        raise SiteFileProblems([f"timezone {site.timezone[:64]!r} is not a known IANA time zone, "
                                "e.g. Europe/Stockholm"])
    problems = [f"{where} is {len(text)} characters long; at most {MAX_TEXT}"
                for where, text in _texts(site.model_dump(mode="json", exclude={"timezone"}), "")
                if len(text) > MAX_TEXT]
    problems += [f"zone {zone.id!r}: has {area:.2g} m2 of area; a zone needs at least {MIN_ZONE_AREA_M2:g} m2"
                 for zone in site.zones if (area := site.local_polygon(zone).area) < MIN_ZONE_AREA_M2]
    if problems:
        raise SiteFileProblems(problems)


def parse_site(text: str | bytes, source: str = "site file") -> SiteConfig:
    """Parse a YAML, GeoJSON or KML site file; problems are one readable line each, in one SitePulseError. What
    was repaired is in the site's ``warnings`` (and logged)."""
    site = _parse_site(text, source)
    for warning in site.warnings:
        log.warning("%s: %s", source, warning)
    return site


def _parse_site(text: str | bytes, source: str) -> SiteConfig:
    try:
        if len(text) > MAX_SITE_FILE_BYTES:
            raise SiteFileProblems([f"the file is {len(text):,} bytes; a site file may be at most "
                                    f"{MAX_SITE_FILE_BYTES // 1024 // 1024} MB"])
        if _looks_like_xml(text):
            doc = _from_kml(text)
        else:
            doc = _read_document(text)
            if not isinstance(doc, dict):
                raise SiteFileProblems(["expected a mapping or a GeoJSON FeatureCollection"])
            if doc.get("type") == "FeatureCollection":
                doc = _from_geojson(doc)
        _check_corner_counts(doc)
        site = SiteConfig.model_validate(doc)
        _check_site_limits(site)
        return site
    except SiteFileProblems as exc:
        raise SitePulseError("\n".join(f"{source}: {line}" for line in exc.lines)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "site"
        message = first["msg"].removeprefix("Value error, ")
        raise SitePulseError(f"{source}: {where}: {message}") from None
    except ValueError as exc:
        raise SitePulseError(f"{source}: {exc}") from None


def load_site_file(path: str | Path) -> SiteConfig:
    """Read and parse a site file from disk."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise SitePulseError(f"{path}: cannot read site file ({exc.strerror})") from None
    return parse_site(text, source=str(path))


def site_to_json(site: SiteConfig) -> str:
    """Canonical JSON of a site, as stored by the registry."""
    return json.dumps(site.model_dump(mode="json"), sort_keys=True)
