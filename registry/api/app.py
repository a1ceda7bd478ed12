"""The FastAPI application: the registry's routers, each service's router, auth, errors and metrics.

Everything HTTP lives under ``registry/api/``; it calls the registry's domain (``registry/*.py``), which
never imports it back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from microservices.discovery import discover_services
from microservices.sdk import Service
from registry.alarms import Supervisor
from registry.api.errors import install_error_handlers
from registry.api.headers import SecurityHeadersMiddleware
from registry.api.metrics import MetricsMiddleware
from registry.api.plugins import mount_service_routers, site_route_names
from registry.api.ratelimit import install_limits
from registry.api.routes import (
    aemp,
    alerts,
    customers,
    enablement,
    evaluation,
    events,
    export,
    health,
    lifecycle,
    metrics,
    needs,
    reports,
    sharing,
    sites,
    tokens,
    transparency,
    trials,
    usage,
    view,
)
from registry.api.routes import services as catalogue
from registry.api.state import AppState, attach, token_checker
from registry.api.validation import times_in_range
from registry.shift_reports.scheduler import ReportScheduler
from registry.tokens import hash_token
from registry.usage import UsageRecorder
from registry.webhooks import WebhookPolicy, WebhookSender, approved_hosts
from sitepulse import __version__
from sitepulse.db import make_pool
from sitepulse.settings import Settings, get_settings

DESCRIPTION = """SitePulse HTTP API, version 1.

Send `Authorization: Bearer <token>`. A site token sees only its sites: any other site is
404, exactly like a site that does not exist. Lists take `limit` (default 100, at most 1000)
and `cursor`, and return `{"items": [...], "next_cursor": str | null}`. Every error is
JSON `{"detail": "<reason>"}`.
"""


def create_app(database_url: str, mqtt_url: str, *, services: dict[str, Service] | None = None,
               settings: Settings | None = None, track_usage: bool = True) -> FastAPI:
    """Build the API for one database and broker; the pool and the usage writer start with the lifespan.

    ``track_usage=False`` records no usage events (for benchmarks comparing the overhead).
    """
    settings = settings or get_settings()
    services = discover_services(settings.load_services) if services is None else services
    admin = settings.admin_token.get_secret_value() if settings.admin_token else ""
    state = AppState(database_url, mqtt_url, services, hash_token(admin) if admin else None,
                     usage=UsageRecorder(database_url, enabled=track_usage),
                     webhooks=WebhookPolicy(approved_hosts(settings.webhook_approved_hosts)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pool = await run_in_threadpool(make_pool, database_url, name="sitepulse-api")
        state.usage.start()
        supervisor = Supervisor(database_url, deliver=WebhookSender(state.webhooks))  # alarms (registry/alarms.py)
        supervisor.start()
        scheduler = ReportScheduler(database_url, services, settings)  # scheduled reports (registry/shift_reports)
        scheduler.start()
        try:
            yield
        finally:
            await run_in_threadpool(supervisor.close)
            await run_in_threadpool(scheduler.close)
            await run_in_threadpool(state.usage.close)  # writes every event recorded so far
            await run_in_threadpool(state.pool.close)
            state.pool = None

    app = FastAPI(title="SitePulse", version=__version__, description=DESCRIPTION, docs_url="/docs",
                  openapi_url="/openapi.json", lifespan=lifespan,
                  dependencies=[Depends(times_in_range)])  # every route, the services' included
    attach(app, state)
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    install_limits(app, settings, token_is_valid=token_checker(state))
    app.add_middleware(SecurityHeadersMiddleware, tiles_url=settings.map_tiles_url)  # outermost: 429s and 413s too
    own = [module.router for module in (health, metrics, catalogue, sharing, tokens, sites, customers, enablement,
                                          lifecycle, alerts, needs, transparency, evaluation, usage, view, events,
                                          export, aemp, trials, reports)] + [alerts.rules_router,
                                                                              lifecycle.board_router]
    for router in own:
        app.include_router(router)
    mount_service_routers(app, services, state.metrics, reserved=site_route_names(own))
    view.mount_dashboard(app)
    return app

