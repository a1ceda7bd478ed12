"""The simulator's view of a site: the shipped demo quarry, a road graph from the site's paths, routes.

Haulers drive along the site file's ``paths`` (road centrelines). Paths that share a vertex
(or have vertices within ``SNAP_M`` of each other) are joined there; vertices where three or
more road ends meet are junctions, which the simulated drivers take one at a time. Edges that
cross a restricted zone are only used by an operator who ignores the closure.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import LineString

from sitepulse.errors import SitePulseError
from sitepulse.sitefile import SiteConfig, Zone, ZoneType, load_site_file, parse_site

SNAP_M = 2.0  # vertices of different paths closer than this are one road node
LANE_OFFSET_M = 6.5  # drive 6.5 m right of the centreline: two-lane haul road, 13 m between lane centres
TAPER_M = 30.0  # the lane offset tapers to zero over the first/last metres of a route (spots are on-axis)
PIT_DEPTH_M = 40.0  # load areas lie this far below the rest of the site (gives the ramp grade)
PROFILE_STEP_M = 5.0


def demo_site_text() -> str:
    """The YAML text of the shipped demo quarry."""
    return files("simulators").joinpath("sites/demo_quarry.yaml").read_text()


def demo_site_path() -> Path:
    """Filesystem path of the shipped demo quarry site file."""
    return Path(str(files("simulators").joinpath("sites/demo_quarry.yaml")))


def shipped_sites() -> dict[str, Path]:
    """The site files shipped with the simulator, by name (file stem): the demo quarry and the sites kept
    apart for evaluating services on a site they were not developed on."""
    folder = Path(str(files("simulators").joinpath("sites")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_site(path: str | Path | SiteConfig | None = None) -> SiteConfig:
    """Load a site file with the kernel's parser: a path, a shipped site's name (``shipped_sites()``), or the
    demo quarry when no path is given; a SiteConfig is returned as it is."""
    if isinstance(path, SiteConfig):
        return path
    if path is None:
        return parse_site(demo_site_text(), source="demo_quarry.yaml")
    shipped = shipped_sites()
    if isinstance(path, str) and path in shipped:
        return parse_site(shipped[path].read_text(), source=shipped[path].name)
    return load_site_file(path)


@dataclass
class Edge:
    """A directed stretch of road between two graph nodes."""

    key: tuple[int, int, str]  # (from node, to node, path id): two paths may join the same nodes
    path_id: str
    xy: np.ndarray  # (n, 2) centreline vertices in local metres, from node key[0] to key[1]
    length: float
    speed_limit_kmh: float | None
    restricted: bool


@dataclass
class Route:
    """A drivable lane from a start point to an end point, parametrised by centreline distance s."""

    s: np.ndarray  # cumulative centreline distance at each vertex
    lane_x: np.ndarray  # lane (offset) vertex coordinates, same parametrisation
    lane_y: np.ndarray
    z: np.ndarray  # elevation at each vertex
    edges: list[tuple[tuple, float, float, str]]  # (edge key, s_start, s_end, path id)
    junctions: list[tuple[int, float]]  # (node id, s at the node)
    access_s: float  # s at the destination zone's access node (queue slots are measured from here)
    limit: np.ndarray = field(default_factory=lambda: np.zeros(0))  # posted limit per PROFILE_STEP_M
    grade: np.ndarray = field(default_factory=lambda: np.zeros(0))  # grade per PROFILE_STEP_M
    restricted: bool = False

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def position(self, s: float) -> tuple[float, float, float]:
        """Lane x, y and heading (degrees clockwise from north) at distance s."""
        s = min(max(s, 0.0), self.length)
        i = int(np.searchsorted(self.s, s, side="right")) - 1
        i = min(max(i, 0), len(self.s) - 2)
        s0, s1 = self.s[i], self.s[i + 1]
        f = 0.0 if s1 <= s0 else (s - s0) / (s1 - s0)
        x = self.lane_x[i] + f * (self.lane_x[i + 1] - self.lane_x[i])
        y = self.lane_y[i] + f * (self.lane_y[i + 1] - self.lane_y[i])
        dx, dy = self.lane_x[i + 1] - self.lane_x[i], self.lane_y[i + 1] - self.lane_y[i]
        hd = math.degrees(math.atan2(dx, dy))
        return float(x), float(y), hd % 360.0

    def edge_at(self, s: float) -> tuple[tuple, float, str, int]:
        """The edge key, distance along that edge, its path id and the edge index at s."""
        for k, (key, s0, s1, pid) in enumerate(self.edges):
            if s <= s1 or k == len(self.edges) - 1:
                return key, s - s0, pid, k
        raise AssertionError("unreachable")


@dataclass
class Spot:
    """Where a hauler stands to be loaded or to tip, and (load zones) where its loader works."""

    zone_id: str
    index: int
    xy: tuple[float, float]
    truck_side: tuple[float, float]  # loader position when tipping into the truck
    face: tuple[float, float]  # loader position when filling the bucket


class RoadNetwork:
    """Road graph of a site plus the zone access points, spots and parking slots the fleet uses."""

    def __init__(self, site: SiteConfig, loaders_per_zone: dict[str, int] | None = None,
                 pit_depth_m: float = PIT_DEPTH_M) -> None:
        self.site = site
        self.frame = site.frame
        self.polygons = {z.id: site.local_polygon(z) for z in site.zones}
        self.zones: dict[str, Zone] = {z.id: z for z in site.zones}
        restricted = [self.polygons[z.id] for z in site.zones if z.type == ZoneType.restricted]
        self.nodes: list[tuple[float, float]] = []
        self.edges: dict[tuple[int, int], Edge] = {}
        self._build(restricted)
        self.degree = {n: 0 for n in range(len(self.nodes))}
        for (a, _b, _p) in self.edges:
            self.degree[a] += 1
        self.junction_nodes = {n for n, d in self.degree.items() if d >= 3}
        self.access: dict[str, int] = {}
        for z in site.zones:
            if z.type in (ZoneType.load, ZoneType.dump, ZoneType.parking):
                self.access[z.id] = self._access_node(z.id)
        load_nodes = {self.access[z.id] for z in site.zones if z.type == ZoneType.load}
        self.elevation = {n: (-pit_depth_m if n in load_nodes else 0.0) for n in range(len(self.nodes))}
        self.loaders_per_zone = loaders_per_zone or {}
        self.spots: dict[str, list[Spot]] = {}
        for z in site.zones:
            if z.type == ZoneType.load:
                self.spots[z.id] = self._make_spots(z.id, max(1, self.loaders_per_zone.get(z.id, 1)))
            elif z.type == ZoneType.dump:
                self.spots[z.id] = self._make_spots(z.id, 1)
        self._routes: dict[tuple, Route] = {}

    # ---- graph construction -------------------------------------------------------------
    def _node(self, x: float, y: float) -> int:
        for i, (nx, ny) in enumerate(self.nodes):
            if math.hypot(nx - x, ny - y) <= SNAP_M:
                return i
        self.nodes.append((x, y))
        return len(self.nodes) - 1

    def _build(self, restricted: list) -> None:
        if not self.site.paths:
            raise SitePulseError("site file has no paths: the simulator drives on haul-road centrelines")
        local = []
        for p in self.site.paths:
            lons, lats = zip(*p.points, strict=True)
            x, y = self.frame.to_xy(list(lons), list(lats))
            local.append((p, np.column_stack([x, y])))
        # a vertex becomes a node when it is a path end or is shared with another path
        all_pts = np.vstack([xy for _, xy in local])
        for p, xy in local:
            cut = [0]
            for i in range(1, len(xy) - 1):
                near = np.hypot(all_pts[:, 0] - xy[i, 0], all_pts[:, 1] - xy[i, 1]) <= SNAP_M
                if near.sum() > 1:
                    cut.append(i)
            cut.append(len(xy) - 1)
            for a, b in zip(cut[:-1], cut[1:], strict=True):
                piece = xy[a:b + 1]
                na, nb = self._node(*piece[0]), self._node(*piece[-1])
                if na == nb:
                    continue
                seg_len = float(np.hypot(*np.diff(piece, axis=0).T).sum())
                line = LineString(piece)
                bad = any(line.intersects(poly) for poly in restricted)
                for key, pts in (((na, nb, p.id), piece), ((nb, na, p.id), piece[::-1])):
                    self.edges[key] = Edge(key, p.id, pts.copy(), seg_len, p.speed_limit_kmh, bad)

    def _access_node(self, zone_id: str) -> int:
        poly = self.polygons[zone_id]
        inside = [n for n, (x, y) in enumerate(self.nodes) if poly.contains(shapely.Point(x, y))]
        if inside:
            return min(inside, key=lambda n: (-sum(1 for k, e in self.edges.items()
                                                    if k[0] == n and not e.restricted), n))
        c = poly.centroid
        return min(range(len(self.nodes)), key=lambda n: math.hypot(self.nodes[n][0] - c.x,
                                                                     self.nodes[n][1] - c.y))

    def _inbound_direction(self, node: int) -> tuple[float, float]:
        """Unit vector of travel as a hauler arrives at ``node`` on an open road."""
        into = sorted(k for k, e in self.edges.items() if k[1] == node and not e.restricted) or \
            sorted(k for k in self.edges if k[1] == node)
        xy = self.edges[into[0]].xy
        d = xy[-1] - xy[-2]
        n = float(np.hypot(*d)) or 1.0
        return float(d[0] / n), float(d[1] / n)

    def _make_spots(self, zone_id: str, count: int) -> list[Spot]:
        node = self.access[zone_id]
        ex, ey = self.nodes[node]
        ux, uy = self._inbound_direction(node)
        wx, wy = uy, -ux
        poly = self.polygons[zone_id]
        spots = []
        for j in range(count):
            lat = (j - (count - 1) / 2) * 35.0
            for scale in (1.0, 0.6, 0.35, 0.15):
                sx, sy = ex + ux * 25 * scale + wx * lat * scale, ey + uy * 25 * scale + wy * lat * scale
                if poly.contains(shapely.Point(sx, sy)):
                    break
            truck = (sx + ux * 12 * scale, sy + uy * 12 * scale)
            face = (sx + ux * 35 * scale, sy + uy * 35 * scale)
            spots.append(Spot(zone_id, j, (sx, sy), truck, face))
        return spots

    def parking_slots(self, zone_id: str, count: int) -> list[tuple[float, float]]:
        """Up to ``count`` distinct standing places inside a parking zone, nearest the access node first."""
        poly = self.polygons[zone_id]
        ex, ey = self.nodes[self.access[zone_id]]
        minx, miny, maxx, maxy = poly.bounds
        xs = np.arange(minx + 8, maxx - 4, 14.0)
        ys = np.arange(miny + 8, maxy - 4, 14.0)
        cand = [(float(x), float(y)) for x in xs for y in ys
                if poly.contains(shapely.Point(x, y)) and math.hypot(x - ex, y - ey) > 12]
        cand.sort(key=lambda p: (math.hypot(p[0] - ex, p[1] - ey), p))
        while len(cand) < count:  # a small parking zone: stack the rest near the access node
            k = len(cand)
            cand.append((ex + 10 * math.cos(k), ey + 10 * math.sin(k)))
        return cand[:count]

    # ---- routing ------------------------------------------------------------------------
    def shortest_edges(self, a: int, b: int, allow_restricted: bool = False) -> list[tuple[int, int, str]]:
        """Dijkstra over the road graph; restricted edges only when the operator ignores the closure."""
        dist = {a: 0.0}
        prev: dict[int, tuple[int, int, str]] = {}
        heap = [(0.0, a)]
        while heap:
            d, n = heapq.heappop(heap)
            if n == b:
                break
            if d > dist.get(n, math.inf):
                continue
            for key in sorted(k for k in self.edges if k[0] == n):
                e = self.edges[key]
                if e.restricted and not allow_restricted:
                    continue
                nd = d + e.length
                if nd < dist.get(key[1], math.inf):
                    dist[key[1]] = nd
                    prev[key[1]] = key
                    heapq.heappush(heap, (nd, key[1]))
        if b not in dist:
            raise SitePulseError("site file: the haul roads do not connect every load, dump and parking zone")
        out: list[tuple[int, int, str]] = []
        n = b
        while n != a:
            out.append(prev[n])
            n = prev[n][0]
        return out[::-1]

    def has_restricted_shortcut(self, a: int, b: int) -> bool:
        """True when ignoring a closure gives a different (shorter) road between two nodes."""
        return self.shortest_edges(a, b, True) != self.shortest_edges(a, b, False)

    def route(self, start: tuple[str, object], end_zone: str, end_spot: int,
              allow_restricted: bool = False) -> Route:
        """A lane to a spot in ``end_zone``; start is ("spot", (zone, i)) or ("xy", (x, y))."""
        key = (start[0], start[1], end_zone, end_spot, allow_restricted)
        if key not in self._routes:
            self._routes[key] = self._make_route(start, end_zone, end_spot, allow_restricted)
        return self._routes[key]

    def _make_route(self, start, end_zone, end_spot, allow_restricted) -> Route:
        if start[0] == "spot":
            zone_id, i = start[1]
            sxy = self.spots[zone_id][i].xy
            a = self.access[zone_id]
            head_key: tuple = ("leave", zone_id, i)
        else:
            sxy = start[1]
            a = self._nearest_node(sxy)
            head_key = ("slot", round(sxy[0], 1), round(sxy[1], 1))
        b = self.access[end_zone]
        path_edges = self.shortest_edges(a, b, allow_restricted)
        nodes = [a] + [k[1] for k in path_edges]
        pts = [np.array([sxy])]
        restricted = False
        for ek in path_edges:
            e = self.edges[ek]
            restricted |= e.restricted
            pts.append(e.xy)
        spot = self.spots[end_zone][end_spot] if end_zone in self.spots else None
        end_xy = spot.xy if spot else self.nodes[b]
        pts.append(np.array([end_xy]))
        xy = np.vstack(pts)
        # drop repeated vertices but remember which vertices are nodes (for junction positions)
        keep = np.ones(len(xy), dtype=bool)
        keep[1:] = np.hypot(*np.diff(xy, axis=0).T) > 1e-6
        xy = xy[keep]
        s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
        # edge spans in s
        edges = []
        node_s = {}
        for u, v in zip(nodes[:-1], nodes[1:], strict=True):
            for nid in (u, v):
                if nid not in node_s:
                    nx, ny = self.nodes[nid]
                    d = np.hypot(xy[:, 0] - nx, xy[:, 1] - ny)
                    cand = np.nonzero(d < 1e-3)[0]
                    node_s[nid] = float(s[cand[0]]) if len(cand) else float(s[int(np.argmin(d))])
        if not nodes[1:]:
            nx, ny = self.nodes[a]
            node_s[a] = float(s[int(np.argmin(np.hypot(xy[:, 0] - nx, xy[:, 1] - ny)))])
        s_prev = 0.0
        edges.append((head_key, 0.0, node_s[a], ""))
        s_prev = node_s[a]
        for ek in path_edges:
            u, v, pid = ek
            edges.append((ek, node_s[u], node_s[v], pid))
            s_prev = node_s[v]
        edges.append((("arrive", end_zone, end_spot), s_prev, float(s[-1]), ""))
        junctions = [(n, node_s[n]) for n in nodes if n in self.junction_nodes]
        # elevation: linear in s between graph nodes
        zs_s = [node_s[n] for n in nodes]
        zs = [self.elevation[n] for n in nodes]
        z = np.interp(s, zs_s, zs) if len(zs_s) > 1 else np.full(len(s), zs[0])
        # lane offset to the right of travel, mitred at vertices, tapered at both ends
        d = np.diff(xy, axis=0)
        n_seg = np.hypot(d[:, 0], d[:, 1])[:, None]
        t = d / np.where(n_seg == 0, 1, n_seg)
        right = np.column_stack([t[:, 1], -t[:, 0]])
        vn = np.vstack([right[:1], right[:-1] + right[1:], right[-1:]])
        vn_len = np.hypot(vn[:, 0], vn[:, 1])[:, None]
        vn = vn / np.where(vn_len == 0, 1, vn_len)
        cos_half = np.abs(np.sum(vn * np.vstack([right[:1], right]), axis=1))
        miter = np.clip(1.0 / np.maximum(cos_half, 0.5), 1.0, 2.0)[:, None]
        taper = np.clip(np.minimum(s, s[-1] - s) / TAPER_M, 0.0, 1.0)[:, None]
        lane = xy + vn * miter * LANE_OFFSET_M * taper
        route = Route(s=s, lane_x=lane[:, 0], lane_y=lane[:, 1], z=z, edges=edges, junctions=junctions,
                      access_s=node_s[b], restricted=restricted)
        self._profiles(route)
        return route

    def _nearest_node(self, xy: tuple[float, float]) -> int:
        return min(range(len(self.nodes)),
                   key=lambda n: (math.hypot(self.nodes[n][0] - xy[0], self.nodes[n][1] - xy[1]), n))

    def _profiles(self, route: Route) -> None:
        """Posted speed limit and grade every PROFILE_STEP_M along the route."""
        ss = np.arange(0.0, route.length + PROFILE_STEP_M, PROFILE_STEP_M)
        x = np.interp(ss, route.s, route.lane_x)
        y = np.interp(ss, route.s, route.lane_y)
        limit = np.full(len(ss), np.inf)
        for key, s0, s1, _pid in route.edges:
            if isinstance(key[0], int):
                lim = self.edges[key].speed_limit_kmh
                if lim:
                    m = (ss >= s0) & (ss <= s1)
                    limit[m] = np.minimum(limit[m], lim)
        for z in self.site.zones:
            if z.speed_limit_kmh:
                inside = shapely.contains_xy(self.polygons[z.id], x, y)
                limit[inside] = np.minimum(limit[inside], z.speed_limit_kmh)
        # drivers comply a little ahead of a sign: take the lowest limit within +-15 m
        w = int(15 / PROFILE_STEP_M)
        padded = np.pad(limit, w, mode="edge")
        limit = np.min(np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1), axis=1)
        z = np.interp(ss, route.s, route.z)
        grade = np.gradient(z, PROFILE_STEP_M) if len(ss) > 1 else np.zeros(len(ss))
        route.limit = limit
        route.grade = grade
