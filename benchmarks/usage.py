"""What usage tracking costs a request: API latency with tracking on vs off, on a real server and database.

Starts embedded PostgreSQL in a temporary directory and the API under uvicorn on loopback,
serving a small service route that reads the database. Sends requests in interleaved rounds
with usage tracking switched on and off between rounds (the same server, pool and connection,
so only tracking differs), over a keep-alive connection, then prints p50/p95 per mode, the
ratio of the medians and whether every tracked request became a usage event after a clean
shutdown. (Two separate servers were tried first: whichever started second was slower,
which swamped the effect being measured.)

    .venv/bin/python benchmarks/usage.py                       # 2,000 requests per mode
    .venv/bin/python benchmarks/usage.py --requests 5000 --rounds 20

Exit status 1 when p50(on) > 1.10 x p50(off) or an event is missing.
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off sys.path: its ingest.py would shadow the ingest package the migrations import.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import logging
import statistics
import tempfile
import threading
import time
from typing import Any

import httpx
import psycopg
import uvicorn
from fastapi import APIRouter
from pydantic import BaseModel

from microservices.sdk import Outputs, Service, ServiceRequestDep
from registry.api.app import create_app
from registry.api.state import state_of
from registry.enablement import set_enablement
from registry.tokens import create_token
from sitepulse.embedded.ports import free_port
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade
from sitepulse.settings import load_settings

SITE = "bench"
MAX_REQUESTS = 100_000


class Ping(Service):
    """A service route of typical weight: one small query through the request's connection."""

    name = "ping"

    def process(self, batch: Any, state: dict, settings: BaseModel) -> tuple[Outputs, dict]:
        return Outputs(), state

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/pong")
        def pong(ctx: ServiceRequestDep) -> dict[str, Any]:
            return {"site": ctx.site_id, "rows": ctx.rows("SELECT generate_series(1, 10) AS n")}

        return router


class ServerThread:
    """One API under uvicorn in a thread; ``stop`` runs the app's shutdown (which flushes usage)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/sites/{SITE}/ping/pong"


def _timed(client: httpx.Client, url: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
    return times


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per mode (at most 100,000)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds per mode")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per mode first")
    args = parser.parse_args()
    requests = min(max(args.requests, args.rounds), MAX_REQUESTS)
    per_round = requests // args.rounds
    logging.basicConfig(level=logging.WARNING)
    services = {"ping": Ping()}
    with tempfile.TemporaryDirectory(prefix="sitepulse-usage-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast_unsafe=False)
        url = pg.start()
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                upgrade(conn)
                conn.execute("INSERT INTO sites (site_id, name, config) VALUES (%s, 'Bench', '{}')", (SITE,))
                set_enablement(conn, services, SITE, "ping", enabled=True)
                token = create_token(conn, "bench user", [SITE]).token
            app = create_app(url, "mqtt://127.0.0.1:1", services=services, settings=load_settings())
            usage = state_of(app).usage
            times: dict[str, list[float]] = {"on": [], "off": []}
            tracked_requests = 0
            with ServerThread(app) as server, httpx.Client(headers={"Authorization": f"Bearer {token}"},
                                                           timeout=10) as client:
                _timed(client, server.url, args.warmup)  # tracked: warms the writer's connection too
                tracked_requests += args.warmup
                for round_no in range(args.rounds):
                    for mode in ("on", "off") if round_no % 2 == 0 else ("off", "on"):
                        usage.enabled = mode == "on"
                        times[mode] += _timed(client, server.url, per_round)
                        tracked_requests += per_round if mode == "on" else 0
                usage.enabled = True
            # the server has shut down: its lifespan wrote every queued event
            with psycopg.connect(url) as conn:
                events = conn.execute("SELECT count(*) FROM usage_events WHERE site_id = %s AND action = 'api_call'",
                                      (SITE,)).fetchone()[0]
        finally:
            pg.stop()
    made = tracked_requests
    p50_on, p50_off = _pct(times["on"], 50), _pct(times["off"], 50)
    ratio = p50_on / p50_off
    print(f"requests per mode: {per_round * args.rounds} timed, {args.rounds} rounds (+{args.warmup} warm-up)")
    for mode in ("off", "on"):
        print(f"tracking {mode:3s}: p50 {_pct(times[mode], 50):6.3f} ms   p95 {_pct(times[mode], 95):6.3f} ms")
    print(f"p50 on / off: {ratio:.3f} (target <= 1.10)")
    print(f"usage events written: {events} of {made} tracked requests {'OK' if events == made else 'MISSING'}")
    return 0 if ratio <= 1.10 and events == made else 1


if __name__ == "__main__":
    raise SystemExit(main())
