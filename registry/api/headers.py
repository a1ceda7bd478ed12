"""Security headers on every response, as a plain ASGI middleware.

The dashboard is same-origin static files with no inline script or style, so its Content-Security-Policy
allows scripts, styles and fetches from the API's own origin only (images also from ``data:``/``blob:`` and,
when configured, the map's tile server). Should any user text ever reach the page as markup again, the
browser still refuses to run it. The page may not be framed (clickjacking), content types are never sniffed,
and no Referer leaves the dashboard (URLs carry site ids and export ranges).

FastAPI's ``/docs`` and ``/redoc`` pages load Swagger UI / ReDoc from a CDN and set them up with one inline
script: their policy allows that CDN and exactly those inline scripts, by SHA-256 of their text.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from registry.api.ratelimit import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS = frozenset({"/docs", "/redoc"})
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_IMAGES = "https://fastapi.tiangolo.com"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)

COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)


# An unhandled error's 500 is answered by Starlette's outermost middleware, outside this one: its JSON carries
# these itself (registry/api/errors.py).
ERROR_HEADERS = {**{k.decode(): v.decode() for k, v in COMMON_HEADERS},
                 "content-security-policy": "default-src 'none'; frame-ancestors 'none'"}


def tile_source(tiles_url: str | None) -> str | None:
    """The CSP source of an XYZ tile URL template: its origin, ``{s}`` subdomains as a wildcard; None if unset
    or not http(s)."""
    if not tiles_url:
        return None
    parts = urlsplit(tiles_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    if "{" in host:  # {s}.tile.example.org, {a-c}.example.org: any subdomain of what follows the template
        host = "*." + host.split("}", 1)[1].lstrip(".")
    return f"{parts.scheme}://{host}"


def dashboard_policy(tiles_url: str | None = None) -> str:
    """The Content-Security-Policy of the API and the dashboard."""
    images = " ".join(filter(None, ("'self' data: blob:", tile_source(tiles_url))))
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src " + images + "; connect-src 'self';"
            " font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def docs_policy(body: bytes) -> str:
    """The policy of an API docs page: its CDN, and its own inline scripts by hash."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
                      for script in _INLINE_SCRIPT.findall(body))
    return (f"default-src 'none'; script-src {DOCS_CDN} {hashes}; style-src {DOCS_CDN} 'unsafe-inline';"
            f" img-src 'self' data: {DOCS_IMAGES} {DOCS_CDN}; font-src {DOCS_CDN} https://fonts.gstatic.com;"
            f" worker-src blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _with(headers: Iterable[tuple[bytes, bytes]], extra: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` plus ``extra``; a header the route set itself is kept, not doubled."""
    out = list(headers)
    present = {name.lower() for name, _ in out}
    out.extend((name, value) for name, value in extra if name not in present)
    return out


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (errors, 404s, 429s and static files included)."""

    def __init__(self, app: ASGIApp, *, tiles_url: str | None = None) -> None:
        self.app = app
        self.headers = (*COMMON_HEADERS, (b"content-security-policy", dashboard_policy(tiles_url).encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") in DOCS_PATHS:
            await self._docs(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _with(message.get("headers", ()), self.headers)}
            await send(message)

        await self.app(scope, receive, secured)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the (small) docs page to hash its inline scripts into its policy."""
        start: Message = {}
        body = bytearray()

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    policy = (b"content-security-policy", docs_policy(bytes(body)).encode())
                    await send({**start, "headers": _with(start.get("headers", ()), (*COMMON_HEADERS, policy))})
                    await send({"type": "http.response.body", "body": bytes(body)})
                return
            await send(message)

        await self.app(scope, receive, buffered)
