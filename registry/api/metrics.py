"""API request counters and latency per route template, kept in-process and rendered for Prometheus.

Labels use the route template (``/api/v1/sites/{site_id}/alerts``), never the raw path, so
the number of series stays bounded whatever clients send; unmatched paths count as ``<unmatched>``.
The counting and the text format are prometheus-client's (a registry per app, so tests and several apps in one
process do not share counts); recording one request costs ~4 us (0.7 us hand-written before), nothing beside a
request's own milliseconds.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"


def label_value(value: str) -> str:
    """A Prometheus label value, escaped (for the lines the API adds by hand: service lag, failures)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class RequestMetrics:
    """Request counts by (method, route, status) and latency by (method, route); thread-safe (prometheus-client)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter("sitepulse_api_requests", "API requests by route template and status",
                                 ("method", "route", "status"), registry=self.registry)
        self._latency = Histogram("sitepulse_api_request_duration_seconds", "API request latency by route template",
                                  ("method", "route"), buckets=BUCKETS, registry=self.registry)
        self.templates: dict[int, str] = {}  # id(route) -> full path template, for included routers

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(method, route).observe(seconds)

    def render(self) -> str:
        """Prometheus text exposition of the counters."""
        return generate_latest(self.registry).decode()


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request and recording it under its route template."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            self.metrics.observe(scope["method"], self._template(scope), status, time.perf_counter() - start)

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED
        return self.metrics.templates.get(id(route)) or getattr(route, "path", None) or UNMATCHED
