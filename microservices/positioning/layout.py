"""A site's zones and haul roads prepared once for positioning: a zone index, zone types and limits, road
centrelines in local metres, and the speed limit that applies at a position."""

from __future__ import annotations

import numpy as np
import shapely

from sitepulse.sitefile import SiteConfig, ZoneType
from sitepulse.zones import ZoneIndex

ZONE_TYPES = [t.value for t in ZoneType]  # activity columns <type>_ms, plus none_ms outside every zone


def nearest_segment(x: np.ndarray, y: np.ndarray, coords: np.ndarray, block: int = 4096
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Distance of each point to a polyline (a closed ring repeats its first corner) and the index of its nearest
    segment; numpy in blocks of points (a polyline's few dozen corners make this far cheaper than building shapely
    points)."""
    ax, ay = coords[:-1, 0], coords[:-1, 1]
    dx, dy = coords[1:, 0] - ax, coords[1:, 1] - ay
    length2 = np.maximum(dx * dx + dy * dy, 1e-12)
    distance = np.empty(len(x))
    segment = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), block):
        px, py = x[start:start + block, None] - ax, y[start:start + block, None] - ay
        along = np.clip((px * dx + py * dy) / length2, 0.0, 1.0)
        squared = (px - along * dx) ** 2 + (py - along * dy) ** 2
        nearest = squared.argmin(axis=1)
        segment[start:start + block] = nearest
        distance[start:start + block] = np.sqrt(squared[np.arange(len(nearest)), nearest])
    return distance, segment


def within_box(x: np.ndarray, y: np.ndarray, bounds: np.ndarray, reach_m: float) -> np.ndarray:
    """Rows of the points inside ``bounds`` (minx, miny, maxx, maxy) grown by ``reach_m``."""
    minx, miny, maxx, maxy = bounds
    return np.flatnonzero((x >= minx - reach_m) & (x <= maxx + reach_m) & (y >= miny - reach_m)
                          & (y <= maxy + reach_m))


class Layout:
    """A site's zones and roads prepared once: zone index, limits, road centrelines in local metres."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.index = ZoneIndex(site)
        self.frame = site.frame
        zones = self.index.zones
        self.zone_ids = np.array([z.id for z in zones] + [None], dtype=object)
        self.zone_type_codes = np.array([ZONE_TYPES.index(z.type.value) for z in zones] + [len(ZONE_TYPES)])
        self.zone_limits = np.array([z.speed_limit_kmh or np.inf for z in zones], dtype=float)
        self.restricted = np.array([z.type == ZoneType.restricted for z in zones], dtype=bool)
        self.paths = [p for p in site.paths if p.speed_limit_kmh]
        lines = []
        for path in self.paths:
            lons, lats = zip(*path.points, strict=True)
            px, py = self.frame.to_xy(list(lons), list(lats))
            lines.append(shapely.LineString(np.c_[px, py]))
        self.lines = lines
        # per road: its corners and bounds (distances to it), and the compass bearing of each segment
        self.line_coords = [np.asarray(ln.coords) for ln in lines]
        self.line_bounds = [np.array(ln.bounds) for ln in lines]
        self.bearings = [np.degrees(np.arctan2(*np.diff(coords, axis=0).T)) for coords in self.line_coords]
        self.path_limits = np.array([p.speed_limit_kmh for p in self.paths], dtype=float)
        # each zone's border as segments (start, end), and its bounds, for distances to the border
        self.borders = [np.asarray(p.exterior.coords) for p in self.index.polygons]
        self.bounds = np.array([p.bounds for p in self.index.polygons], dtype=float).reshape(-1, 4)

    def border_depth(self, x: np.ndarray, y: np.ndarray, inside: np.ndarray, reach_m: float) -> np.ndarray:
        """Signed distance (m) of each position to each zone's border: positive inside, negative outside; -inf
        farther outside than ``reach_m`` (by bounding box), where hysteresis no longer needs the exact figure."""
        depth = np.where(inside, np.inf, -np.inf)
        for column, ring in enumerate(self.borders):
            rows = within_box(x, y, self.bounds[column], reach_m)
            if len(rows):
                depth[rows, column] = np.where(inside[rows, column], 1.0, -1.0) * nearest_segment(
                    x[rows], y[rows], ring)[0]
        return depth

    def limits(self, x: np.ndarray, y: np.ndarray, heading_deg: np.ndarray, inside: np.ndarray,
               corridor_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Applicable speed limit per position (inf: none) and the zone or road id that sets it.

        The road is the nearest centreline within the corridor that runs along the machine's heading
        (within 45 degrees either way); with no heading, or no aligned road, simply the nearest road in the
        corridor. Inside a zone with a posted limit the zone's (lowest) limit governs: where roads meet, as in
        a junction zone, which road a machine is on is ambiguous from its position.
        """
        n = len(x)
        limit = np.full(n, np.inf)
        source = np.full(n, None, dtype=object)
        known = np.isfinite(x) & np.isfinite(y)
        if self.lines and known.any():
            px, py, heading = x[known], y[known], heading_deg[known]
            distance = np.full((len(px), len(self.lines)), np.inf)
            segment = np.zeros((len(px), len(self.lines)), dtype=np.int64)
            for column, coords in enumerate(self.line_coords):
                rows = within_box(px, py, self.line_bounds[column], corridor_m)
                if len(rows):
                    distance[rows, column], segment[rows, column] = nearest_segment(px[rows], py[rows], coords)
            within = distance <= corridor_m
            aligned = np.ones_like(distance, dtype=bool)
            ambiguous = within.sum(axis=1) > 1  # only where roads meet does the heading decide
            for column in range(len(self.lines)):
                rows = np.flatnonzero(ambiguous & within[:, column])
                road = self.bearings[column][segment[rows, column]]  # compass bearing of the road, degrees
                off = np.abs((heading[rows] - road + 90.0) % 180.0 - 90.0)  # either driving direction
                aligned[rows, column] = off <= 45.0
            has_heading = np.isfinite(heading)[:, None]
            preferred = within & np.where(has_heading & (within & aligned).any(axis=1, keepdims=True), aligned, True)
            cost = np.where(preferred, distance, np.inf)
            nearest = cost.argmin(axis=1)
            near = np.isfinite(cost[np.arange(len(nearest)), nearest])
            limit[known] = np.where(near, self.path_limits[nearest], np.inf)
            source[known] = np.where(near, np.array([p.id for p in self.paths], dtype=object)[nearest], None)
        if len(self.zone_limits):
            zone_limit = np.where(inside, self.zone_limits[None, :], np.inf)
            lowest = zone_limit.argmin(axis=1)
            value = zone_limit[np.arange(n), lowest]
            lower = np.isfinite(value)  # inside a zone with a posted limit, the zone's limit governs
            limit = np.where(lower, value, limit)
            source = np.where(lower, self.zone_ids[lowest], source)
        return limit, source
