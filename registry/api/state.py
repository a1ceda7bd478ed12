"""What the app factory keeps on ``app.state``, and how a request reaches it: the only module that touches it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Request
from psycopg_pool import ConnectionPool

from microservices.sdk import Service
from registry.api.metrics import RequestMetrics
from registry.api.tickets import new_key
from registry.tokens import authenticate
from registry.usage import UsageRecorder
from registry.webhooks import WebhookPolicy

_KEY = "sitepulse"  # the one attribute of app.state this API uses


@dataclass
class AppState:
    """The API's shared objects: the pool is opened by the lifespan, the rest by ``create_app``."""

    database_url: str
    mqtt_url: str
    services: dict[str, Service]
    admin_token_hash: str | None
    metrics: RequestMetrics = field(default_factory=RequestMetrics)
    pool: ConnectionPool | None = None
    usage: UsageRecorder = field(default_factory=lambda: UsageRecorder(None))  # started by the lifespan
    stream_key: bytes = field(default_factory=new_key)  # signs live-stream tickets (registry/api/tickets.py)
    webhooks: WebhookPolicy = field(default_factory=WebhookPolicy)  # where alarm webhooks may go


def attach(app: FastAPI, state: AppState) -> None:
    """Keep ``state`` on the app (``create_app`` does this once)."""
    setattr(app.state, _KEY, state)


def state_of(app: Any) -> AppState:
    """The AppState of an app built by ``create_app`` (tests and benchmarks flush its usage recorder)."""
    return getattr(app.state, _KEY)


def token_checker(state: AppState) -> Callable[[str], bool]:
    """Whether a presented token is live (the rate limiter asks before refusing an address that failed often)."""

    def is_valid(token: str) -> bool:
        if state.pool is None:
            return False
        with state.pool.connection() as conn:
            return authenticate(conn, token, state.admin_token_hash) is not None

    return is_valid


def app_state(request: Request) -> AppState:
    """The AppState of the app serving this request."""
    return state_of(request.app)


def get_db(request: Request) -> Iterator[psycopg.Connection]:
    """One pooled connection per request; committed when the route returns, rolled back if it raises."""
    pool = app_state(request).pool
    if pool is None:
        raise RuntimeError("the API's connection pool is not open (was the app started with its lifespan?)")
    with pool.connection() as conn:
        yield conn


DbDep = Annotated[psycopg.Connection, Depends(get_db, scope="function")]


def _name(principal: Any) -> str:
    return getattr(principal, "name", principal)


def record_card_views(request: Request, site_id: str, services: Iterable[str], principal: Any) -> None:
    """One ``card_view`` per service card the site view rendered for ``principal`` (a Principal or a name)."""
    app_state(request).usage.card_views(site_id, services, _name(principal))


def record_export(request: Request, site_id: str, service: str | None, principal: Any, what: str,
                  fmt: str) -> None:
    """One ``export`` event: ``what`` left the platform as ``fmt`` (csv, json, ...)."""
    app_state(request).usage.export(site_id, service, _name(principal), what, fmt, request.url.path)
