"""The site's live feed for the dashboard: server-sent events with machine positions and open alerts.

Auth: ``POST .../stream/ticket`` (bearer token in the header) returns a one-minute signed
ticket; ``GET .../stream?ticket=`` opens the stream with it (see ``registry.api.tickets``).
A stream closes itself after ``max_s`` seconds; the page then asks for a new ticket, so a
revoked token stops receiving data within minutes. Each tick reads ``machine_last`` and the
open-alerts index (both bounded), on a pooled connection taken for the tick only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from registry.api import tickets
from registry.api.deps import PrincipalDep, SiteDep, StateDep, bearer, site_not_found, unauthorised
from registry.api.state import AppState
from registry.tokens import authenticate
from registry.view import load_site_config, open_alerts, site_machines
from sitepulse.errors import NotAuthenticated
from sitepulse.sites import site_exists

router = APIRouter(prefix="/api/v1/sites/{site_id}/stream", tags=["view"])

TICK_S = 1.5


@router.post("/ticket")
def stream_ticket(site_id: SiteDep, principal: PrincipalDep, state: StateDep) -> dict[str, Any]:
    """A one-minute ticket to open this site's live stream (EventSource cannot send the bearer header)."""
    ticket, expires = tickets.issue(state.stream_key, site_id, principal.name)
    return {"ticket": ticket, "expires_at": datetime.fromtimestamp(expires, UTC),
            "stream": f"/api/v1/sites/{site_id}/stream?ticket={ticket}"}


def _tick(state: AppState, site_id: str) -> dict[str, Any] | None:
    """One tick's data: machines and open alerts (None when the site was deleted meanwhile)."""
    assert state.pool is not None
    now = datetime.now(UTC)
    with state.pool.connection() as conn:
        loaded = load_site_config(conn, site_id)
        if loaded is None:
            return None
        machines = site_machines(conn, site_id, loaded[0], now)
        return {"at": now, "machines": machines, "alerts": open_alerts(conn, site_id)}


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _events(request: Request, state: AppState, site_id: str, max_s: float) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + max_s
    yield b"retry: 3000\n\n"
    last_alerts: bytes | None = None
    while time.monotonic() < deadline and not await request.is_disconnected():
        data = await run_in_threadpool(_tick, state, site_id)
        if data is None:
            yield _event("gone", {"site_id": site_id})
            return
        yield _event("machines", {"at": data["at"], "machines": data["machines"]})
        alerts = orjson.dumps(data["alerts"])
        if alerts != last_alerts:
            last_alerts = alerts
            yield _event("alerts", {"at": data["at"], "alerts": data["alerts"]})
        await asyncio.sleep(min(TICK_S, max(0.0, deadline - time.monotonic())))
    yield _event("bye", {"reason": "stream time is up; open a new one with a fresh ticket"})


@router.get("", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
async def stream(
    site_id: str, request: Request, state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ticket: Annotated[str | None, Query(max_length=512, description="from POST .../stream/ticket")] = None,
    max_s: Annotated[float, Query(ge=1, le=600, description="close the stream after this many seconds")] = 300,
) -> StreamingResponse:
    """Server-sent events: ``machines`` every ~1.5 s, ``alerts`` (the open list) whenever it changes.

    Authorised by a ``ticket`` (browsers) or, like every other route, a bearer token (other clients)."""
    if ticket is not None:
        if tickets.verify(state.stream_key, ticket, site_id) is None:
            raise NotAuthenticated("expired or foreign stream ticket; "
                                   "POST /api/v1/sites/{site_id}/stream/ticket for a new one")
    else:
        principal = None
        if credentials is not None and credentials.credentials:
            principal = await run_in_threadpool(_authenticate, state, credentials.credentials)
        if principal is None:
            raise unauthorised()
        if not principal.can_see(site_id):
            raise site_not_found(site_id)
    exists = await run_in_threadpool(_site_exists, state, site_id)
    if not exists:
        raise site_not_found(site_id)
    return StreamingResponse(_events(request, state, site_id, max_s), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _authenticate(state: AppState, token: str) -> Any:
    assert state.pool is not None
    with state.pool.connection() as conn:
        return authenticate(conn, token, state.admin_token_hash)


def _site_exists(state: AppState, site_id: str) -> bool:
    assert state.pool is not None
    with state.pool.connection() as conn:
        return site_exists(conn, site_id)
