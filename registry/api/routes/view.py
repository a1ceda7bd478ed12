"""The composed site view API and the dashboard's static single-page app (served at ``/``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import pandas as pd
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from registry.api.deps import DbDep, PrincipalDep, SiteDep, StateDep, site_not_found
from registry.api.state import record_card_views
from registry.view import compose_view, plain
from sitepulse.settings import get_settings

WEB = Path(__file__).resolve().parent.parent / "web"

router = APIRouter(tags=["view"])


def _json_default(value: Any) -> Any:
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return plain(value)
    return jsonable_encoder(value)  # Decimal, UUID, Enum, pydantic models: as FastAPI would encode them


def view_json(view: Mapping[str, Any]) -> bytes:
    """The view as JSON bytes, encoded as FastAPI's default response would (times as ``datetime.isoformat()``,
    NaN as null) but by orjson: FastAPI's ``jsonable_encoder`` walk costs more than composing the view."""
    return orjson.dumps(view, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


@router.get("/api/v1/sites/{site_id}/view")
def site_view(
    site_id: SiteDep, conn: DbDep, state: StateDep, principal: PrincipalDep, request: Request,
    refresh: Annotated[bool, Query(description="a periodic refresh of a page already open: not a new card view")]
    = False,
) -> dict[str, Any]:
    """The site at a glance: zones (lon/lat and local x/y) and bounds, machines' last values, one card per
    enabled service (a failing card is marked unavailable with its reason), open alerts, time ranges.

    Each card shown is a ``card_view`` usage event, unless ``refresh=true``."""
    try:
        view = compose_view(conn, site_id, state.services, datetime.now(UTC))
    except LookupError:  # deleted between the access check and the read
        raise site_not_found(site_id) from None
    if not refresh:
        record_card_views(request, site_id, [c["service"] for c in view["cards"] if c["status"] == "ok"],
                          principal)
    return Response(view_json(view), media_type="application/json")  # type: ignore[return-value]


@router.get("/api/v1/me")
def whoami(principal: PrincipalDep) -> dict[str, Any]:
    """The caller's token name, role and sites (the dashboard shows admin controls only to admins)."""
    return {"name": principal.name, "role": principal.role, "sites": sorted(principal.sites)}


@router.get("/api/v1/map-background")
def map_background(principal: PrincipalDep) -> dict[str, Any]:
    """The map's optional raster background (``SITEPULSE_MAP_TILES_URL``); null draws the site file alone."""
    settings = get_settings()
    return {"tiles_url": settings.map_tiles_url, "attribution": settings.map_tiles_attribution}


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    """The dashboard page; it logs in with a token and reads everything through the API."""
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard's static assets (shipped in the package; no build step)."""
    app.mount("/static", StaticFiles(directory=WEB), name="static")
