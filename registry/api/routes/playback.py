"""Playback: a period's tracks and events in one compact answer, for the map to replay (gzip when accepted)."""

from __future__ import annotations

import gzip

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from microservices.frames import frame_reader
from microservices.sdk import TimeRangeDep
from registry.api.deps import DbDep, SiteDep, StateDep
from registry.playback import playback
from sitepulse.errors import InvalidInput
from sitepulse.sites import load_site

router = APIRouter(tags=["playback"])


@router.get("/api/v1/sites/{site_id}/playback")
def get_playback(site_id: SiteDep, conn: DbDep, state: StateDep, request: Request, period: TimeRangeDep) -> Response:
    """Every machine's track of the period (downsampled to the track interval, delta-encoded integer columns; see
    ``encoding`` in the answer) and its events by time: zone entries, loads and dumps, close encounters, alarms.
    ``from`` and ``to`` are RFC 3339 times at most 24 hours apart."""
    if period.start is None or period.end is None:
        raise InvalidInput("playback needs both 'from' and 'to' (at most 24 hours apart)")
    site = load_site(conn, site_id)
    names = {z.id: z.label for z in site.zones} if site else {}
    body = orjson.dumps(playback(conn, frame_reader(conn), site_id, period.start, period.end, set(state.services),
                                 names))
    headers = {"Vary": "Accept-Encoding", "Cache-Control": "private, max-age=60"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(gzip.compress(body, 6), media_type="application/json",
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(body, media_type="application/json", headers=headers)
