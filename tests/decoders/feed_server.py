"""A real HTTP server on loopback serving ISO 15143-3 fixtures, with per-OEM credentials, for feed tests."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parents[2] / "decoders" / "iso15143" / "fixtures"
PAGES = {
    "/oem-a/Fleet/1": "fleet_standard_1.json", "/oem-a/Fleet/2": "fleet_standard_2.json",
    "/oem-b/Fleet/1": "fleet_namespaced.xml", "/oem-b/series/locations/2": "series_locations_2.xml",
    "/oem-c/fleet/1": "fleet_prefixed_1.xml", "/oem-c/fleet/2": "fleet_prefixed_2.xml",
    "/oem-d/Fleet/1": "fleet_lowercase.json",
}
SERIES = {  # time-series URL prefix -> fixture (the window's start and end follow in the path)
    "/oem-b/Fleet/Equipment/ID/CAT745-77/Locations/": "series_locations_1.xml",
    "/oem-b/Fleet/Equipment/ID/CAT745-77/FaultCodes/": "series_faultcodes.json",
}
CREDENTIALS = {"/oem-a/": "Bearer token-a", "/oem-b/": "Basic " + base64.b64encode(b"fleet:pw-b").decode()}


class FeedServer:
    """What it serves can be changed (``bodies``) and what it was asked is recorded (``requests``)."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.base = ""

    def body(self, path: str) -> bytes | None:
        if path in self.bodies:
            return self.bodies[path]
        name = PAGES.get(path) or next((f for p, f in SERIES.items() if path.startswith(p)), None)
        if name is None:
            return None
        return (FIXTURES / name).read_bytes().replace(b"{base}", self.base.encode())


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    """Serve the fixtures on 127.0.0.1 (free port) until the block ends."""
    state = FeedServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.requests.append(self.path)
            needed = next((v for p, v in CREDENTIALS.items() if self.path.startswith(p)), None)
            if needed is not None and self.headers.get("Authorization") != needed:
                self.send_response(401)
                self.end_headers()
                return
            body = state.body(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/xml" if body.lstrip().startswith(b"<")
                             else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
