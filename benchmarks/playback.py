"""Playback of a shift on the map: the answer's size and the browser's frame rate (issue 33).

Stores a shift of track and events for N machines (default 50 over 12 hours, a point per machine every 5 s, as
positioning stores it: ``tests/browser/playback_shift.py``) in an embedded PostgreSQL, serves the API in process
and measures:

- the playback answer: bytes as JSON and as sent (gzip), against the same positions as plain JSON rows
  (``{"machine_id", "ts", "lat", "lon", "state"}`` per point, the shape the other list routes use): the ratio is
  what the columnar, delta-encoded, still-runs-dropped encoding saves; and the server's time for it (median);
- in Debian's Chromium (Playwright), the playback page playing the shift at 60x: frames per second drawn with every
  machine moved each frame (median of 1-second windows), against the same page's frame rate standing still
  (the baseline of this machine and browser in the same run), and the time from "Load" to the first frame.

    .venv/bin/python benchmarks/playback.py                       # 50 machines, 12 hours
    .venv/bin/python benchmarks/playback.py --machines 10 --hours 2
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off sys.path (its ingest.py would shadow the ingest package); the repository root on it.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import gzip
import json
import logging
import statistics
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg

from microservices.discovery import discover_services
from registry.enablement import set_enablement
from simulators.site import load_site
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade
from sitepulse.sites import save_site
from tests.browser.playback_shift import seed_shift, serve_api, shift_period

SITE = "bench"
ADMIN = "bench-playback-admin-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"


def payload(base: str, url: str, start: datetime, end: datetime, repeats: int) -> dict[str, Any]:
    """Sizes of the playback answer (JSON, gzip) and of the same points as plain rows; the server's median time."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    params = {"from": start.isoformat(), "to": end.isoformat()}
    times, answer = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        answer = httpx.get(f"{base}/api/v1/sites/{SITE}/playback", params=params, timeout=120,
                           headers={**headers, "Accept-Encoding": "gzip"})
        times.append(time.perf_counter() - began)
        answer.raise_for_status()
    assert answer is not None
    raw = answer.content
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT machine_id, ts, lat, lon, state FROM positioning.track WHERE site_id = %s "
                            "AND ts >= %s AND ts < %s ORDER BY machine_id, ts", (SITE, start, end)).fetchall()
    plain = orjson.dumps([{"machine_id": m, "ts": t.isoformat(), "lat": la, "lon": lo, "state": s}
                          for m, t, la, lo, s in rows])
    body = answer.json()
    return {"json_bytes": len(raw), "gzip_bytes": int(answer.headers.get("content-length", len(gzip.compress(raw)))),
            "plain_rows_bytes": len(plain), "plain_rows_gzip_bytes": len(gzip.compress(plain, 6)),
            "points_stored": len(rows), "points_sent": sum(len(m["t"]) for m in body["machines"]),
            "events": len(body["events"]), "server_s_median": statistics.median(times)}


def frame_rate(base: str, start: datetime, end: datetime, seconds: float) -> dict[str, Any]:
    """Frames per second in Chromium: the playback page standing still, then playing at 60x."""
    from playwright.sync_api import sync_playwright

    measure = """async (ms) => { const stamps = []; const t0 = performance.now();
        await new Promise((done) => { const f = (now) => { stamps.push(now);
          if (now - t0 < ms) requestAnimationFrame(f); else done(); }; requestAnimationFrame(f); });
        const perSecond = []; for (let s = t0; s + 1000 <= t0 + ms; s += 1000)
          perSecond.push(stamps.filter((t) => t >= s && t < s + 1000).length);
        return perSecond; }"""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base + "/")
        page.get_by_label("Access token").fill(ADMIN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector(".site-list")
        page.goto(f"{base}/#/sites/{SITE}/playback")
        page.select_option("#playback-shift", "custom")
        page.fill("#playback-from", start.astimezone().strftime("%Y-%m-%dT%H:%M"))
        page.fill("#playback-to", end.astimezone().strftime("%Y-%m-%dT%H:%M"))
        began = time.perf_counter()
        page.get_by_role("button", name="Load").click()
        page.wait_for_function("() => window.sitepulsePlayback"
                               " && document.querySelectorAll('.playback-machine').length")
        loaded_s = time.perf_counter() - began
        machines = page.locator(".playback-machine").count()
        still = page.evaluate(measure, seconds * 1000)
        page.select_option("#playback-speed", "60")
        page.get_by_role("button", name="Play").click()
        before = page.evaluate("() => [window.sitepulsePlayback.frames, window.sitepulsePlayback.time]")
        playing = page.evaluate(measure, seconds * 1000)
        after = page.evaluate("() => [window.sitepulsePlayback.frames, window.sitepulsePlayback.time]")
        browser.close()
    return {"machines_drawn": machines, "load_to_first_frame_s": loaded_s,
            "fps_still_median": statistics.median(still), "fps_playing_median": statistics.median(playing),
            "fps_playing_min": min(playing), "player_frames": after[0] - before[0],
            "shift_seconds_played": after[1] - before[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=50)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=5, help="timed playback requests")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of frames measured, still and playing")
    parser.add_argument("--json", type=Path, help="also write the figures to this file as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="sitepulse-bench-playback-"))
    server = EmbeddedPostgres(root / "pgdata", fast_unsafe=True)
    server.start()
    try:
        url = server.fresh_database("bench_playback")
        services = discover_services(None)
        site = load_site()
        start, end = shift_period(datetime.now(UTC), args.hours)
        with psycopg.connect(url, autocommit=True) as conn:
            upgrade(conn)
            save_site(conn, SITE, site)
            for name in ("positioning", "weight-loading", "traffic-awareness"):
                set_enablement(conn, services, SITE, name, enabled=True)
            began = time.perf_counter()
            seeded = seed_shift(conn, SITE, site, start, args.hours, args.machines)
            conn.execute("VACUUM ANALYZE positioning.track")
        print(f"stored {seeded.track_rows:,} track points and {seeded.events:,} events for {args.machines} machines "
              f"over {args.hours:g} h in {time.perf_counter() - began:.0f} s", flush=True)
        base, api = serve_api(url, services, ADMIN)
        sizes = payload(base, url, start, end, args.repeats)
        fps = frame_rate(base, start, end, args.seconds)
        api.should_exit = True
    finally:
        server.stop()
    figures = {"machines": args.machines, "hours": args.hours, **sizes, **fps}
    print(f"playback answer: {sizes['json_bytes'] / 1e6:.2f} MB JSON, {sizes['gzip_bytes'] / 1e6:.2f} MB sent "
          f"(gzip); {sizes['points_sent']:,} of {sizes['points_stored']:,} stored points sent, {sizes['events']:,} "
          f"events; server {sizes['server_s_median']:.2f} s (median of {args.repeats})")
    print(f"  the same points as plain JSON rows: {sizes['plain_rows_bytes'] / 1e6:.2f} MB, gzip "
          f"{sizes['plain_rows_gzip_bytes'] / 1e6:.2f} MB -> sent/plain-gzip = "
          f"{sizes['gzip_bytes'] / sizes['plain_rows_gzip_bytes']:.3f}, sent/plain = "
          f"{sizes['gzip_bytes'] / sizes['plain_rows_bytes']:.4f}")
    print(f"browser: {fps['machines_drawn']} machines, load to first frame {fps['load_to_first_frame_s']:.2f} s; "
          f"{fps['fps_playing_median']:.0f} fps playing at 60x (min {fps['fps_playing_min']}) vs "
          f"{fps['fps_still_median']:.0f} fps standing still -> ratio "
          f"{fps['fps_playing_median'] / max(fps['fps_still_median'], 1):.2f}; "
          f"{fps['shift_seconds_played']:.0f} s of shift played in {args.seconds:g} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
