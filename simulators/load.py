"""Load mode: thousands of simple machines publishing at a fixed rate, for the ingest benchmarks.

Each worker process owns a slice of the machines, moves them on circles around the site
(simple kinematics are enough to load a pipeline), and publishes one QoS 1 sample per machine
per tick, paced to the wall clock. The result says what rate the broker actually acknowledged.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass

import numpy as np
import orjson

from simulators.outputs import MAX_OUTSTANDING, connect, wait_acked
from simulators.truth import iso_ms
from sitepulse.errors import SitePulseError

ORIGIN_LAT, ORIGIN_LON = 59.30, 18.10  # the demo quarry's neighbourhood
M_PER_DEG_LAT = 111_320.0


@dataclass
class LoadResult:
    """Outcome of a load run: messages the broker acknowledged, over how long, against the target."""

    machines: int
    hz: float
    processes: int
    sent: int
    acked: int
    seconds: float
    target_rate: float
    max_lag_s: float

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0


def _worker(index: int, first: int, count: int, hz: float, duration_s: float, url: str, site_id: str,
            seed: int, start_at: float, queue) -> None:
    """One publisher process: ``count`` machines from id ``first``."""
    try:
        client, state = connect(url, client_id=f"sitepulse-load-{os.getpid()}-{index}")
    except SitePulseError as exc:
        queue.put({"error": str(exc)})
        return
    rng = np.random.default_rng([seed, index])
    ids = [f"LD-{first + k:05d}" for k in range(count)]
    topics = [f"sites/{site_id}/machines/{mid}/telemetry" for mid in ids]
    radius = rng.uniform(50, 900, count)
    omega = rng.uniform(3, 12, count) / 3.6 / radius  # 3-12 m/s along the circle
    phase = rng.uniform(0, 2 * math.pi, count)
    cx, cy = rng.uniform(-300, 300, count), rng.uniform(-300, 300, count)
    payload = rng.uniform(0, 40_000, count).round(1)
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(ORIGIN_LAT))
    dt = 1.0 / hz
    ticks = int(round(duration_s * hz))
    sent = 0
    max_lag = 0.0
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.monotonic()
    wall0 = time.time()
    for k in range(ticks):
        due = t0 + k * dt
        lag = time.monotonic() - due
        if lag < 0:
            time.sleep(-lag)
        else:
            max_lag = max(max_lag, lag)
        t = k * dt
        ang = phase + omega * t
        lat = ORIGIN_LAT + (cy + radius * np.sin(ang)) / M_PER_DEG_LAT
        lon = ORIGIN_LON + (cx + radius * np.cos(ang)) / m_per_deg_lon
        heading = (np.degrees(-ang) % 360.0).round(1)
        speed = (omega * radius * 3.6).round(1)
        ts = iso_ms(wall0 + t)
        lat_l, lon_l, hd_l, sp_l, pl_l = (lat.round(7).tolist(), lon.round(7).tolist(), heading.tolist(),
                                          speed.tolist(), payload.tolist())
        hours = round(t / 3600.0, 4)
        for j in range(count):
            body = orjson.dumps({"ts": ts, "seq": k, "lat": lat_l[j], "lon": lon_l[j], "speed_kmh": sp_l[j],
                                 "heading_deg": hd_l[j], "payload_kg": pl_l[j], "fuel_used_l": hours * 20,
                                 "engine_hours": hours, "engine_on": True})
            client.publish(topics[j], body, qos=1)
            sent += 1
            if sent - state["acked"] > MAX_OUTSTANDING:
                wait_acked(state, sent - MAX_OUTSTANDING // 5)
    ok = wait_acked(state, sent, timeout=120)
    elapsed = time.monotonic() - t0
    client.disconnect()
    client.loop_stop()
    queue.put({"sent": sent, "acked": state["acked"] if ok else min(state["acked"], sent),
               "seconds": elapsed, "max_lag": max_lag})


def run_load(machines: int = 10_000, hz: float = 1.0, duration_s: float = 60.0, processes: int | None = None,
             mqtt_url: str = "mqtt://127.0.0.1:1883", site_id: str = "load", seed: int = 0) -> LoadResult:
    """Publish ``machines`` x ``hz`` samples per second for ``duration_s`` from several processes."""
    if machines <= 0 or hz <= 0 or duration_s <= 0:
        raise SitePulseError("load mode needs --machines, --hz and --duration above zero")
    processes = processes or max(1, min(os.cpu_count() or 1, math.ceil(machines * hz / 5000)))
    processes = min(processes, machines)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    share = [machines // processes + (1 if i < machines % processes else 0) for i in range(processes)]
    start_at = time.time() + 1.5 + 0.3 * processes  # let every spawned process import and connect first
    procs = []
    first = 0
    for i, count in enumerate(share):
        args = (i, first, count, hz, duration_s, mqtt_url, site_id, seed, start_at, queue)
        p = ctx.Process(target=_worker, args=args, daemon=True)
        p.start()
        procs.append(p)
        first += count
    results = []
    try:
        for _ in procs:
            results.append(queue.get(timeout=duration_s + 180))
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise SitePulseError(errors[0])
    return LoadResult(machines=machines, hz=hz, processes=processes,
                      sent=sum(r["sent"] for r in results), acked=sum(r["acked"] for r in results),
                      seconds=max(r["seconds"] for r in results), target_rate=machines * hz,
                      max_lag_s=max(r["max_lag"] for r in results))
