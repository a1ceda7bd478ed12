"""The FastAPI application: health and readiness now; services, sites and views mount here."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from sitepulse import __version__
from sitepulse.db import connect
from sitepulse.errors import ConfigError
from sitepulse.runtime import check_broker


def create_app(database_url: str, mqtt_url: str) -> FastAPI:
    """Build the API for one database and broker."""
    app = FastAPI(title="SitePulse", version=__version__, docs_url="/docs")

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """200 while the process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        """200 when the database and the broker are reachable, 503 naming what is not."""
        problems = []
        try:
            with connect(database_url, timeout=2) as conn:
                conn.execute("SELECT 1")
        except ConfigError as exc:
            problems.append(str(exc))
        try:
            check_broker(mqtt_url, timeout=2)
        except ConfigError as exc:
            problems.append(str(exc))
        if problems:
            return JSONResponse({"status": "unavailable", "reasons": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app
