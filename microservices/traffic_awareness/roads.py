"""A site's layout prepared for traffic awareness: zones, haul-road centrelines, congestion segments and lanes.

Geometry only (shapely, in the site's local metric frame): which road segment or junction a position is on,
where a lane runs, and which minutes of a segment were congested. Built once per site file and settings
(the service caches it); the routes build it too, to describe the segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
import shapely.ops

from microservices.traffic_awareness.settings import TrafficSettings
from sitepulse.sitefile import SiteConfig, ZoneType
from sitepulse.zones import ZoneIndex

NONE = -1  # no zone, no segment


@dataclass(frozen=True)
class Segments:
    """A site's congestion segments in local metres: pieces of haul-road centrelines and junction zones."""

    ids: list[str]
    kinds: list[str]  # "road" or "junction"
    limits: np.ndarray  # posted limit km/h (inf: none)
    lengths: np.ndarray  # metres (a junction zone: the diagonal of its bounding box)
    shapes: list[Any]
    tree: Any


def split_line(coords: np.ndarray, length_m: float) -> list[np.ndarray]:
    """A polyline cut into consecutive pieces of about ``length_m`` (the last absorbs the remainder)."""
    line = shapely.LineString(coords)
    total = line.length
    pieces = max(1, int(round(total / length_m)))
    cuts = np.linspace(0, total, pieces + 1)
    out = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        piece = shapely.ops.substring(line, a, b)
        out.append(np.asarray(piece.coords))
    return out


class Layout:
    """A site's zones, haul-road centrelines and congestion segments, prepared once in the site's local frame."""

    def __init__(self, site: SiteConfig, settings: TrafficSettings) -> None:
        self.site = site
        self.frame = site.frame
        self.index = ZoneIndex(site)
        zones = self.index.zones
        self.zone_ids = np.array([z.id for z in zones] + [None], dtype=object)
        self.parking = [k for k, z in enumerate(zones) if z.type == ZoneType.parking]
        self.load = [k for k, z in enumerate(zones) if z.type == ZoneType.load]
        self.served = [k for k, z in enumerate(zones) if z.type in (ZoneType.load, ZoneType.dump)]
        self.road_zones = [k for k, z in enumerate(zones) if z.type == ZoneType.road]
        self.unlaned = [k for k, z in enumerate(zones) if z.type in (ZoneType.parking, ZoneType.workshop)]
        ids, kinds, limits, lengths, shapes = [], [], [], [], []
        for path in site.paths:
            lons, lats = zip(*path.points, strict=True)
            px, py = self.frame.to_xy(list(lons), list(lats))
            for k, piece in enumerate(split_line(np.c_[px, py], settings.segment_length_m)):
                line = shapely.LineString(piece)
                ids.append(f"{path.id}#{k + 1}")
                kinds.append("road")
                limits.append(path.speed_limit_kmh or np.inf)
                lengths.append(line.length)
                shapes.append(line)
        roads = list(shapes)
        self.lines = []
        for path in site.paths:
            lons, lats = zip(*path.points, strict=True)
            px, py = self.frame.to_xy(list(lons), list(lats))
            self.lines.append(shapely.LineString(np.c_[px, py]))
        for k in self.road_zones:
            zone, polygon = zones[k], self.index.polygons[k]
            ids.append(zone.id)
            kinds.append("junction")
            limits.append(zone.speed_limit_kmh or np.inf)
            minx, miny, maxx, maxy = polygon.bounds
            lengths.append(float(np.hypot(maxx - minx, maxy - miny)))
            shapes.append(polygon)
        self.segments = Segments(ids, kinds, np.array(limits, float), np.array(lengths, float), shapes,
                                        shapely.STRtree(roads) if roads else None)


def assign_segments(segments: Segments, x: np.ndarray, y: np.ndarray, junction_inside: np.ndarray,
                    corridor_m: float) -> np.ndarray:
    """Index of the segment each position is on: the junction zone containing it, else the nearest road piece
    within the corridor; NONE off the roads."""
    result = np.full(len(x), NONE, dtype=np.int64)
    known = np.isfinite(x) & np.isfinite(y)
    if segments.tree is not None and known.any():
        rows = np.flatnonzero(known)
        points = shapely.points(x[rows], y[rows])
        pairs, _ = segments.tree.query_nearest(points, max_distance=corridor_m, return_distance=True, all_matches=False)
        result[rows[pairs[0]]] = pairs[1]
    junction = junction_inside.argmax(axis=1) if junction_inside.size else np.zeros(len(x), np.int64)
    in_junction = junction_inside.any(axis=1) if junction_inside.size else np.zeros(len(x), bool)
    road_count = len(segments.ids) - junction_inside.shape[1] if junction_inside.size else len(segments.ids)
    return np.where(in_junction, road_count + junction, result)


def snap_to_lanes(x: np.ndarray, y: np.ndarray, heading_deg: np.ndarray, eligible: np.ndarray, lines: list[Any],
                  corridor_m: float, lane_offset_m: float, tolerance_m: float,
                  max_angle_deg: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Map-match positions onto their lane: on exactly one road that runs along the heading (within the corridor
    of its centreline, within ``max_angle_deg`` of it either way), and within ``tolerance_m`` of the lane
    ``lane_offset_m`` right of the centreline for the direction of travel, the lateral offset becomes the
    lane's. The position along the road is kept as measured; off-lane positions are left alone."""
    x, y = x.copy(), y.copy()
    rows = np.flatnonzero(eligible & np.isfinite(x) & np.isfinite(y) & np.isfinite(heading_deg))
    if not lines or len(rows) == 0:
        return x, y
    points = shapely.points(x[rows], y[rows])
    hx, hy = np.sin(np.radians(heading_deg[rows])), np.cos(np.radians(heading_deg[rows]))
    count = np.zeros(len(rows), dtype=np.int64)
    shift_x = np.zeros(len(rows))
    shift_y = np.zeros(len(rows))
    snappable = np.zeros(len(rows), dtype=bool)
    cos_max = np.cos(np.radians(max_angle_deg))
    for line in lines:
        sel = np.flatnonzero(shapely.distance(line, points) <= corridor_m)
        if len(sel) == 0:
            continue
        along = shapely.line_locate_point(line, points[sel])
        foot = shapely.get_coordinates(shapely.line_interpolate_point(line, along))
        ahead = shapely.get_coordinates(shapely.line_interpolate_point(line, np.minimum(along + 1.0, line.length)))
        behind = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(along - 1.0, 0.0)))
        tangent = ahead - behind
        tangent /= np.maximum(np.hypot(tangent[:, 0], tangent[:, 1]), 1e-9)[:, None]
        cos = tangent[:, 0] * hx[sel] + tangent[:, 1] * hy[sel]
        aligned = np.abs(cos) >= cos_max
        sel, cos, foot, tangent = sel[aligned], cos[aligned], foot[aligned], tangent[aligned]
        count[sel] += 1
        direction = np.sign(cos)
        right = np.c_[tangent[:, 1], -tangent[:, 0]] * direction[:, None]  # unit normal to the right of travel
        offset = (x[rows[sel]] - foot[:, 0]) * right[:, 0] + (y[rows[sel]] - foot[:, 1]) * right[:, 1]
        shift = lane_offset_m - offset
        snappable[sel] = np.abs(shift) <= tolerance_m
        shift_x[sel] = shift * right[:, 0]
        shift_y[sel] = shift * right[:, 1]
    snap = (count == 1) & snappable
    x[rows[snap]] += shift_x[snap]
    y[rows[snap]] += shift_y[snap]
    return x, y


def congested_runs(minutes: np.ndarray, slow: np.ndarray, min_minutes: int) -> list[tuple[int, int]]:
    """Runs of consecutive slow minutes (epoch ms, one segment) longer than ``min_minutes`` minutes:
    (first minute, minute after the last)."""
    runs = []
    order = np.argsort(minutes)
    m, s = minutes[order], slow[order]
    start = None
    previous = None
    for minute, is_slow in zip(m, s, strict=True):
        if is_slow and start is not None and previous is not None and minute - previous == 60_000:
            previous = minute
            continue
        if start is not None and (previous - start) // 60_000 + 1 > min_minutes:
            runs.append((int(start), int(previous) + 60_000))
        start, previous = (minute, minute) if is_slow else (None, None)
    if start is not None and (previous - start) // 60_000 + 1 > min_minutes:
        runs.append((int(start), int(previous) + 60_000))
    return runs
