"""``sitepulse site suggest-zones``: propose load and dump zones for a site that has not drawn them yet.

Haulers stand still where they are loaded and where they dump. Stops of at least ``min_stop_s``
are found per machine (reported speed below ``stop_kmh``); a stop whose payload rises is a
loading, one whose payload falls a dump (docs/DOMAIN.md §Haul cycle: payload rises in steps while the
hauler stands at the loader; falls to near zero within tens of seconds at the dump). DBSCAN
(scikit-learn) groups the stop positions of each kind in the site's local metric frame; each
cluster becomes a zone: the convex hull of its stops grown by ``buffer_m``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import shapely
import typer
import yaml

from sitepulse.errors import SitePulseError
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import SiteConfig


def stops(telemetry: pd.DataFrame, frame: LocalFrame, *, stop_kmh: float = 1.0, min_stop_s: float = 20.0,
          payload_change_kg: float = 5000.0) -> pd.DataFrame:
    """Stops per machine with their robust position and payload change: kind 'load' (rising), 'dump'
    (falling) or 'other'."""
    rows = telemetry.dropna(subset=["lat", "lon"]).sort_values(["machine_id", "ts"], kind="stable")
    if rows.empty:
        return pd.DataFrame(columns=["machine_id", "start", "end", "x", "y", "payload_change_kg", "kind"])
    x, y = frame.to_xy(rows["lon"].to_numpy(float), rows["lat"].to_numpy(float))
    stopped = (rows["speed_kmh"].fillna(0).to_numpy(float) < stop_kmh)
    machine = rows["machine_id"].to_numpy()
    boundary = np.r_[True, (machine[1:] != machine[:-1]) | (stopped[1:] != stopped[:-1])]
    frame_ = pd.DataFrame({"machine_id": machine, "ts": rows["ts"].to_numpy(), "x": x, "y": y,
                           "payload": rows["payload_kg"].to_numpy(float) if "payload_kg" in rows else np.nan,
                           "run": np.cumsum(boundary), "stopped": stopped})
    frame_ = frame_[frame_["stopped"]]
    runs = frame_.groupby("run")
    head = frame_.groupby("run").head(5).groupby("run")["payload"].median()
    tail = frame_.groupby("run").tail(5).groupby("run")["payload"].median()
    found = pd.DataFrame({
        "machine_id": runs["machine_id"].first(),
        "start": runs["ts"].min(),
        "end": runs["ts"].max(),
        "x": runs["x"].median(),  # the median shrugs off GNSS jumps during the stop
        "y": runs["y"].median(),
        "payload_change_kg": tail - head,
    })
    found = found[(found["end"] - found["start"]).dt.total_seconds() >= min_stop_s].reset_index(drop=True)
    change = found["payload_change_kg"].fillna(0)
    found["kind"] = np.where(change >= payload_change_kg, "load", np.where(change <= -payload_change_kg, "dump",
                                                                           "other"))
    return found


def propose_zones(telemetry: pd.DataFrame, frame: LocalFrame, *, eps_m: float = 60.0, min_stops: int = 3,
                  buffer_m: float = 25.0, **stop_options: Any) -> list[dict[str, Any]]:
    """Proposed load and dump zones (site-file zone dicts, lon/lat polygons) from where haulers stopped."""
    from sklearn.cluster import DBSCAN  # here, not at import: scikit-learn would add seconds to every command

    found = stops(telemetry, frame, **stop_options)
    zones = []
    for kind in ("load", "dump"):
        points = found.loc[found["kind"] == kind, ["x", "y"]].to_numpy()
        if len(points) < min_stops:
            continue
        labels = DBSCAN(eps=eps_m, min_samples=min_stops).fit_predict(points)
        clusters = sorted(set(labels) - {-1}, key=lambda k: (-int((labels == k).sum()), k))
        for number, label in enumerate(clusters, start=1):
            member = points[labels == label]
            hull = shapely.convex_hull(shapely.MultiPoint(member)).buffer(buffer_m, quad_segs=4)
            hull = shapely.simplify(hull, 1.0)
            ring = np.asarray(hull.exterior.coords)[:-1]
            lon, lat = frame.to_lonlat(ring[:, 0], ring[:, 1])
            zones.append({
                "id": f"proposed-{kind}-{number}", "type": kind,
                "name": f"Proposed {kind} area {number} ({len(member)} {kind}s seen)",
                "polygon": [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)],
            })
    return zones


def as_snippet(zones: list[dict[str, Any]], fmt: str = "yaml") -> str:
    """A site-file snippet: YAML ``zones:`` list, or a GeoJSON FeatureCollection."""
    if fmt == "geojson":
        features = [{"type": "Feature", "properties": {k: v for k, v in z.items() if k != "polygon"},
                     "geometry": {"type": "Polygon", "coordinates": [z["polygon"] + [z["polygon"][0]]]}}
                    for z in zones]
        return json.dumps({"type": "FeatureCollection", "features": features}, indent=2)
    return yaml.safe_dump({"zones": zones}, sort_keys=False, default_flow_style=None, width=120)


def _from_file(path: Path) -> pd.DataFrame:
    from ingest.reader import telemetry_of_messages
    from sitepulse.recording import read_messages

    now = datetime.now(UTC)
    return telemetry_of_messages((m.topic, m.payload, now) for m in read_messages(path))


def _from_database(site_id: str, hours: float) -> tuple[pd.DataFrame, SiteConfig | None]:
    from ingest.reader import newest_sample_ts, read_telemetry_range
    from sitepulse.db import connect
    from sitepulse.logs import configured_settings
    from sitepulse.runtime import open_runtime
    from sitepulse.sites import load_site

    with open_runtime(configured_settings(), broker=False, migrate=False) as runtime, \
            connect(runtime.database_url, autocommit=True) as conn:
        end = datetime.now(UTC) + timedelta(days=1)
        last = newest_sample_ts(conn, site_id)
        if last is None:
            raise SitePulseError(f"site {site_id!r} has no telemetry yet")
        return read_telemetry_range(conn, site_id, last - timedelta(hours=hours), end), load_site(conn, site_id)


def suggest_zones(
    site_id: Annotated[str | None, typer.Argument(help="site whose stored telemetry to use")] = None,
    telemetry: Annotated[Path | None, typer.Option("--telemetry", help="telemetry file from "
                                                   "'sitepulse simulate --out' instead of the database")] = None,
    site_file: Annotated[Path | None, typer.Option("--site", help="site file (its local frame); default: the "
                                                   "stored site, else a frame at the telemetry")] = None,
    hours: Annotated[float, typer.Option(help="hours of the newest stored telemetry to use")] = 24.0,
    eps_m: Annotated[float, typer.Option(help="DBSCAN radius: stops closer than this are neighbours")] = 60.0,
    min_stops: Annotated[int, typer.Option(help="loads or dumps needed to propose a zone")] = 3,
    buffer_m: Annotated[float, typer.Option(help="margin around the stops' convex hull")] = 25.0,
    fmt: Annotated[str, typer.Option("--format", help="yaml or geojson")] = "yaml",
) -> None:
    """Propose load and dump zones from where haulers stood while their payload rose or fell (DBSCAN)."""
    from sitepulse.sitefile import load_site_file

    if fmt not in ("yaml", "geojson"):
        raise SitePulseError("--format must be yaml or geojson")
    site = load_site_file(site_file) if site_file else None
    if telemetry is not None:
        rows = _from_file(telemetry)
        if site_id:
            rows = rows[rows["site_id"] == site_id]
    elif site_id:
        rows, stored = _from_database(site_id, hours)
        site = site or stored
    else:
        raise SitePulseError("give a SITE_ID (stored telemetry) or --telemetry FILE")
    if rows.empty:
        raise SitePulseError("no telemetry to learn zones from")
    if site is not None and (site.zones or site.paths):
        frame = site.frame
    else:
        frame = LocalFrame(float(rows["lat"].median()), float(rows["lon"].median()))
    zones = propose_zones(rows, frame, eps_m=eps_m, min_stops=min_stops, buffer_m=buffer_m)
    if not zones:
        raise SitePulseError("no load or dump zone found: too few stops with a payload change")
    typer.echo(as_snippet(zones, fmt))
