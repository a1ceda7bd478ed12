"""Liveness and readiness probes: no token, so orchestrators and load balancers can call them."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from registry.api.deps import StateDep
from sitepulse.errors import ConfigError
from sitepulse.runtime import check_broker

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """200 while the process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the database or the broker is unreachable"}})
def readyz(state: StateDep) -> JSONResponse:
    """200 when the database and the broker are reachable, 503 naming what is not."""
    problems = []
    try:
        if state.pool is None:
            raise PoolTimeout("the connection pool is not open")
        with state.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:  # PoolTimeout is one
        problems.append(f"SITEPULSE_DATABASE_URL: database unreachable ({exc})")
    try:
        check_broker(state.mqtt_url, timeout=2)
    except ConfigError as exc:
        problems.append(str(exc))
    if problems:
        return JSONResponse({"status": "unavailable", "reasons": problems}, status_code=503)
    return JSONResponse({"status": "ready"})
