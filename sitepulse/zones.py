"""Which zone each position is in, for many positions at once (shapely 2, vectorised).

Shared by every service that needs zones, so a position is in the same zone everywhere.
Positions are projected once to the site's local metric frame; zones may overlap (a load
area inside a road polygon): ``assign`` returns the first match in priority order, and
``membership`` gives a boolean column per zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from sitepulse.sitefile import SiteConfig, Zone, ZoneType

# where zones overlap, the more specific place wins (a load area drawn on a road is a load area)
PRIORITY = [ZoneType.restricted, ZoneType.load, ZoneType.dump, ZoneType.workshop, ZoneType.parking,
            ZoneType.road]


@dataclass
class ZoneIndex:
    """Prepared zone polygons of one site in its local frame."""

    site: SiteConfig
    zones: list[Zone] = field(init=False)
    polygons: list[shapely.Polygon] = field(init=False)
    _grown: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.zones = sorted(self.site.zones, key=lambda z: PRIORITY.index(z.type))
        self.polygons = [self.site.local_polygon(z) for z in self.zones]
        for polygon in self.polygons:
            shapely.prepare(polygon)

    def project(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 positions to the site's local metres."""
        return self.site.frame.to_xy(lon, lat)

    def _shapes(self, buffer_m: float) -> list[tuple[shapely.Polygon, tuple[float, float, float, float]]]:
        """Prepared polygons grown by ``buffer_m`` with their bounds, built once per buffer size."""
        cached = self._grown.get(buffer_m)
        if cached is None:
            cached = []
            for polygon in self.polygons:
                shape = polygon.buffer(buffer_m) if buffer_m else polygon
                shapely.prepare(shape)
                cached.append((shape, shape.bounds))
            if len(self._grown) > 16:
                self._grown.clear()
            self._grown[buffer_m] = cached
        return cached

    def membership(self, x: np.ndarray, y: np.ndarray, buffer_m: float = 0.0) -> np.ndarray:
        """Boolean matrix (positions x zones): inside each zone grown (or shrunk) by ``buffer_m``."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        result = np.zeros((len(x), len(self.zones)), dtype=bool)
        for column, (shape, (minx, miny, maxx, maxy)) in enumerate(self._shapes(float(buffer_m))):
            near = (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)  # cheap box test first
            if near.any():
                result[near, column] = shapely.contains_xy(shape, x[near], y[near])
        return result

    def assign(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index into ``zones`` of the highest-priority zone containing each position, -1 for none."""
        inside = self.membership(np.asarray(x, float), np.asarray(y, float))
        first = inside.argmax(axis=1)
        return np.where(inside.any(axis=1), first, -1)

    def zone_ids(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Zone id (or None) for WGS84 positions."""
        x, y = self.project(lon, lat)
        index = self.assign(x, y)
        ids = np.array([z.id for z in self.zones] + [None], dtype=object)
        return ids[index]
