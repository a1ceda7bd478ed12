"""API request counters and latency per route template, kept in-process and rendered for Prometheus.

Labels use the route template (``/api/v1/sites/{site_id}/alerts``), never the raw path, so
the number of series stays bounded whatever clients send; unmatched paths count as ``<unmatched>``.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


def label_value(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class RequestMetrics:
    """Thread-safe request counts by (method, route, status) and latency by (method, route)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self.templates: dict[int, str] = {}  # id(route) -> full path template, for included routers

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            self._latency[(method, route)].observe(seconds)

    def render(self) -> str:
        """Prometheus text exposition of the counters."""
        with self._lock:
            requests = dict(self._requests)
            latency = {k: (list(h.counts), h.total) for k, h in self._latency.items()}
        lines = [
            "# HELP sitepulse_api_requests_total API requests by route template and status",
            "# TYPE sitepulse_api_requests_total counter",
        ]
        for (method, route, status), count in sorted(requests.items()):
            lines.append(f'sitepulse_api_requests_total{{method="{method}",route="{label_value(route)}",'
                         f'status="{status}"}} {count}')
        lines += [
            "# HELP sitepulse_api_request_duration_seconds API request latency by route template",
            "# TYPE sitepulse_api_request_duration_seconds histogram",
        ]
        for (method, route), (counts, total) in sorted(latency.items()):
            labels = f'method="{method}",route="{label_value(route)}"'
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(
                    f'sitepulse_api_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}')
            lines.append(f"sitepulse_api_request_duration_seconds_sum{{{labels}}} {total:.6f}")
            lines.append(f"sitepulse_api_request_duration_seconds_count{{{labels}}} {cumulative}")
        return "\n".join(lines) + "\n"


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
