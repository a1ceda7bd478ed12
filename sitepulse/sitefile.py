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

GeoJSON shape: a FeatureCollection whose Polygon features carry the zone fields in
``properties`` (``type`` is the zone type), LineString features with ``"path": true``
in properties are paths, and foreign members ``name``, ``timezone``, ``shifts``,
``machines`` at the top level.
"""

from __future__ import annotations

import json
from datetime import time
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely import Polygon

from sitepulse.errors import SitePulseError
from sitepulse.geo import LocalFrame

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
LonLat = tuple[Annotated[float, Field(ge=-180, le=180)], Annotated[float, Field(ge=-90, le=90)]]


class ZoneType(StrEnum):
    load = "load"
    dump = "dump"
    road = "road"
    parking = "parking"
    restricted = "restricted"
    workshop = "workshop"


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
    name: str = ""
    speed_limit_kmh: float | None = Field(None, gt=0, le=200)
    polygon: list[LonLat] = Field(min_length=3)

    @field_validator("polygon")
    @classmethod
    def _open_ring(cls, ring: list[LonLat]) -> list[LonLat]:
        if len(ring) > 3 and ring[0] == ring[-1]:
            ring = ring[:-1]
        if len(ring) < 3:
            raise ValueError("a polygon needs at least 3 distinct corners")
        return ring


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
        for zone in self.zones:
            if not self.local_polygon(zone).is_valid:
                raise ValueError(f"zone {zone.id!r} polygon crosses itself")
        return self

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


def _from_geojson(doc: dict[str, Any]) -> dict[str, Any]:
    zones, paths = [], []
    for index, feature in enumerate(doc.get("features", [])):
        geometry = feature.get("geometry") or {}
        props = dict(feature.get("properties") or {})
        kind = geometry.get("type")
        if kind == "Polygon":
            rings = geometry.get("coordinates") or [[]]
            zones.append(
                {"id": props.pop("id", feature.get("id", f"zone-{index}")), **props, "polygon": rings[0]}
            )
        elif kind == "LineString" and props.pop("path", False):
            paths.append(
                {
                    "id": props.pop("id", feature.get("id", f"path-{index}")),
                    **props,
                    "points": geometry.get("coordinates"),
                }
            )
        else:
            raise ValueError(
                f"feature {index}: unsupported geometry {kind!r} "
                "(zones are Polygons, paths LineStrings with properties.path=true)"
            )
    top = {k: v for k, v in doc.items() if k in {"name", "timezone", "shifts", "machines"}}
    return {**top, "zones": zones, "paths": paths}


def parse_site(text: str | bytes, source: str = "site file") -> SiteConfig:
    """Parse a YAML or GeoJSON site file; any problem is one readable SitePulseError."""
    try:
        doc = yaml.safe_load(text)  # JSON is YAML, so one parser reads both
    except yaml.YAMLError as exc:
        raise SitePulseError(f"{source}: not valid YAML or JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise SitePulseError(f"{source}: expected a mapping or a GeoJSON FeatureCollection")
    try:
        if doc.get("type") == "FeatureCollection":
            doc = _from_geojson(doc)
        return SiteConfig.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "site"
        raise SitePulseError(f"{source}: {where}: {first['msg']}") from None
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
