"""The site file check of a large drawn zone that crosses itself (issue 35): seconds -> milliseconds.

A zone of 10,000 corners (the most a site file may hold per zone) whose corners 2-16 are drawn 50 cm outside and
in the wrong order (a bow tie that ``sitepulse/sitefile.py`` repairs with a warning). The repair's defect is the
discrete Hausdorff distance between the drawn and the repaired outline, each edge cut in ten:

- ``geos``: the former measure, ``shapely.hausdorff_distance(densify=0.1)``, which compares every point with every
  edge (the baseline, timed ``--baseline-runs`` times: about 11 s each);
- ``tree``: the measure in use, from the edges the repair changed to a tree of the other outline's edges;
- ``check``: the whole check of the file, ``parse_site`` of the zone (parsing, bounds, repair).

    .venv/bin/python benchmarks/sitefile.py                 # 10,000 corners, 5 runs (1 of the baseline)
    .venv/bin/python benchmarks/sitefile.py --corners 2000 --runs 9 --baseline-runs 3

Prints medians of CPU seconds and the baseline's ratio to the tree; both measures must agree to 1e-9 m.
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off sys.path: its ingest.py would shadow the ingest package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import logging
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import shapely
from shapely.geometry import Polygon

from sitepulse.sitefile import _farthest_m, _polygons_of, parse_site

M_LON = 1 / (111_320 * math.cos(math.radians(59.0)))


def crossed_ring(corners: int, by_m: float = 0.5) -> list[list[float]]:
    """An ellipse of ``corners`` about 1.1 km x 1.1 km at 59 N with corners 2-16 drawn ``by_m`` outside, reversed."""
    ring = [[round(18.0 + 0.01 * math.cos(2 * math.pi * i / corners), 7),
             round(59.0 + 0.005 * math.sin(2 * math.pi * i / corners), 7)] for i in range(corners)]
    ring[1:16] = [[round(lon + by_m * M_LON, 7), lat] for lon, lat in reversed(ring[1:16])]
    return ring


def cpu_median(work: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.process_time()
        result = work()
        times.append(time.process_time() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corners", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-runs", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("sitepulse.sitefile").setLevel(logging.ERROR)  # the repair's warning, once per run

    drawn = [tuple(p) for p in crossed_ring(args.corners)]
    repaired_polygon = max(_polygons_of(shapely.make_valid(Polygon(drawn), method="structure", keep_collapsed=False)),
                           key=lambda part: part.area)  # as sitepulse/sitefile.py's repaired_ring keeps it
    repaired = [(float(x), float(y)) for x, y in repaired_polygon.exterior.coords[:-1]]
    lat0 = 59.0
    to_m = np.array([111_320 * math.cos(math.radians(lat0)), 111_320])
    a, b = (np.asarray(drawn) - [18.0, lat0]) * to_m, (np.asarray(repaired) - [18.0, lat0]) * to_m

    def geos() -> float:
        return shapely.hausdorff_distance(shapely.LineString(np.r_[a, a[:1]]), shapely.LineString(np.r_[b, b[:1]]),
                                          densify=0.1)

    def tree() -> float:
        return max(_farthest_m(drawn, a, repaired, b), _farthest_m(repaired, b, drawn, a))

    text = json.dumps({"zones": [{"id": "pit", "type": "load", "polygon": crossed_ring(args.corners)}]})
    tree_s, tree_m = cpu_median(tree, args.runs)
    check_s, site = cpu_median(lambda: parse_site(text, source="bench.yaml"), args.runs)
    geos_s, geos_m = cpu_median(geos, args.baseline_runs)
    assert abs(tree_m - geos_m) < 1e-9, (tree_m, geos_m)
    print(f"zone of {args.corners:,} corners crossing itself; defect {tree_m * 100:.0f} cm; "
          f"warning: {site.warnings[0][:60]}...")
    print(f"  geos (baseline, {args.baseline_runs} run)  {geos_s:8.3f} s CPU")
    print(f"  tree (in use, median of {args.runs})  {tree_s:8.3f} s CPU   {geos_s / tree_s:,.0f}x faster")
    print(f"  check of the file (median of {args.runs}) {check_s:8.3f} s CPU")


if __name__ == "__main__":
    main()
