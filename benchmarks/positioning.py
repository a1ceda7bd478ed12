"""Benchmark: zone assignment for 1 M samples against 50 polygons (target >= 500k rows/s), and process() rows/s.

    .venv/bin/python benchmarks/positioning.py [--rows 1000000] [--zones 50] [--repeat 5]

Zone assignment runs ``sitepulse.zones.ZoneIndex.assign`` on random positions over the site's bounding
box; baselines measured in the same run: plain ``shapely.contains_xy`` per polygon over every sample (no
box prefilter, no grid), and the naive way (Point objects, ``shapely.contains`` per polygon) on a subset.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# run as a script, this folder comes first on sys.path and its ingest.py would shadow the ingest package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import shapely  # noqa: E402

from evaluation.pipeline import run_in_chunks, telemetry_from_messages  # noqa: E402
from microservices.positioning import Positioning  # noqa: E402
from simulators.engine import simulate  # noqa: E402
from simulators.faults import parse_faults  # noqa: E402
from simulators.site import load_site  # noqa: E402
from sitepulse.sitefile import SiteConfig  # noqa: E402
from sitepulse.zones import ZoneIndex  # noqa: E402

TYPES = ["load", "dump", "road", "parking", "restricted", "workshop"]


def site_with_zones(count: int, seed: int = 1) -> SiteConfig:
    """The demo quarry's frame with ``count`` random convex zones (20-120 m across) over its area."""
    demo = load_site(None)
    rng = np.random.default_rng(seed)
    frame = demo.frame
    zones = []
    for k in range(count):
        cx, cy = rng.uniform(-1000, 1000), rng.uniform(-750, 750)
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 12)))
        radius = rng.uniform(10, 60, len(angles))
        lon, lat = frame.to_lonlat(cx + radius * np.cos(angles), cy + radius * np.sin(angles))
        ring = shapely.convex_hull(shapely.MultiPoint(np.c_[lon, lat])).exterior.coords[:-1]
        zones.append({"id": f"z{k:02d}", "type": TYPES[k % len(TYPES)], "polygon": [list(p) for p in ring]})
    # keep the demo's frame origin: add its own zones' corners as a far-away anchor is not needed, the random
    # zones are centred on the same origin
    return SiteConfig.model_validate({"name": "bench", "zones": zones})


def best_of(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    """Print rows/s of zone assignment (and baselines) and of the whole service."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--zones", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    site = site_with_zones(args.zones)
    index = ZoneIndex(site)
    minx, miny, maxx, maxy = shapely.total_bounds(index.polygons)
    rng = np.random.default_rng(7)
    x = rng.uniform(minx, maxx, args.rows)
    y = rng.uniform(miny, maxy, args.rows)
    index.assign(x[:1000], y[:1000])  # warm up (prepares the lookup)
    t_assign = best_of(lambda: index.assign(x, y), args.repeat)

    def plain() -> np.ndarray:
        inside = np.column_stack([shapely.contains_xy(p, x, y) for p in index.polygons])
        return np.where(inside.any(axis=1), inside.argmax(axis=1), -1)

    t_plain = best_of(plain, max(1, args.repeat // 2))
    subset = min(args.rows, 20_000)

    def naive() -> list[int]:
        points = [shapely.Point(a, b) for a, b in zip(x[:subset], y[:subset], strict=True)]
        return [next((k for k, p in enumerate(index.polygons) if p.contains(pt)), -1) for pt in points]

    t_naive = best_of(naive, 1)
    assert (plain() == index.assign(x, y)).all()
    rate = args.rows / t_assign
    print(f"zone assignment: {args.rows:,} samples x {len(index.polygons)} polygons")
    print(f"  ZoneIndex.assign            {rate:>12,.0f} rows/s  (median of {args.repeat}; target >= 500,000)")
    print(f"  contains_xy per polygon     {args.rows / t_plain:>12,.0f} rows/s  -> assign is "
          f"{t_plain / t_assign:.1f}x faster")
    print(f"  Point + contains (naive)    {subset / t_naive:>12,.0f} rows/s  -> assign is "
          f"{(t_naive / subset) / (t_assign / args.rows):.0f}x faster")

    demo = load_site(None)
    telemetry = telemetry_from_messages(simulate(demo, site_id="bench", duration_s=3600, seed=3,
                                                 faults=parse_faults("duplicate=0.01,malformed=0.005")))
    for chunk in ("1h", "10min", "1min"):
        elapsed = best_of(lambda c=chunk: run_in_chunks(Positioning(), telemetry, site=demo, chunk=c), 3)
        print(f"process(): {len(telemetry):,} samples (11 machines, 1 h) in {chunk:>5} batches: "
              f"{len(telemetry) / elapsed:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
