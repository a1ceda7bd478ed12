"""What the app factory keeps on ``app.state``, and how a request reaches it, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from microservices.sdk import Service
from registry.metrics import RequestMetrics
from registry.usage import UsageRecorder


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


def app_state(request: Request) -> AppState:
    """The AppState of the app serving this request."""
    return request.app.state.registry


def get_db(request: Request) -> Iterator[psycopg.Connection]:
    """One pooled connection per request; committed when the route returns, rolled back if it raises."""
    pool = app_state(request).pool
    if pool is None:
        raise RuntimeError("the API's connection pool is not open (was the app started with its lifespan?)")
    with pool.connection() as conn:
        yield conn


DbDep = Annotated[psycopg.Connection, Depends(get_db, scope="function")]
