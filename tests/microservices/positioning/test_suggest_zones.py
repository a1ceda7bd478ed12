"""suggest-zones: DBSCAN over haulers' stops proposes load and dump zones close to the simulator's true ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
import typer
from typer.testing import CliRunner

from evaluation.pipeline import telemetry_from_messages
from microservices.positioning.cli import as_snippet, propose_zones, suggest_zones
from simulators.engine import simulate
from simulators.site import load_site
from sitepulse.recording import write_messages
from sitepulse.sitefile import parse_site

pytestmark = pytest.mark.slow


def _local(site, zone: dict) -> shapely.Polygon:
    lon, lat = zip(*zone["polygon"], strict=True)
    x, y = site.frame.to_xy(list(lon), list(lat))
    return shapely.Polygon(np.c_[x, y])


def test_proposed_zones_match_the_true_load_and_dump_zones(tmp_path: Path) -> None:
    site = load_site(None)
    sim = simulate(site, site_id="fresh", duration_s=3600, seed=31)
    messages = list(sim)
    zones = propose_zones(telemetry_from_messages(messages), site.frame)
    true = {z.id: (z.type.value, site.local_polygon(z)) for z in site.zones if z.type.value in ("load", "dump")}
    proposed = [(z["type"], _local(site, z)) for z in zones]
    ious = {}
    for zone_id, (kind, polygon) in true.items():  # every true zone is found ...
        same = [p for k, p in proposed if k == kind and polygon.contains(p.centroid)]
        assert len(same) == 1, zone_id
        ious[zone_id] = same[0].intersection(polygon).area / same[0].union(polygon).area
    for kind, polygon in proposed:  # ... and nothing else is proposed
        assert any(k == kind and p.contains(polygon.centroid) for k, p in true.values())
    print("IoU per true zone:", {k: round(v, 3) for k, v in ious.items()})
    assert min(ious.values()) > 0.03  # the stops cover where work happens, not the drawn approach area
    parsed = parse_site(as_snippet(zones))  # the snippet is a valid site file as it stands
    assert {z.type.value for z in parsed.zones} == {"load", "dump"}

    path = tmp_path / "run.jsonl"
    write_messages(messages, path)
    app = typer.Typer()
    app.command()(suggest_zones)
    result = CliRunner().invoke(app, ["--telemetry", str(path), "--format", "geojson"])
    assert result.exit_code == 0, result.output
    assert parse_site(result.output).zones
