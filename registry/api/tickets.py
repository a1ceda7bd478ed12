"""Short-lived signed tickets that let a browser's EventSource open a site's live stream.

EventSource cannot send an ``Authorization`` header, and a long-lived bearer token in a URL
ends up in access logs and browser history. So the page trades its bearer token (in a header)
for a ticket: HMAC-SHA256 over (site, caller, role, expiry) with a key that lives only in
this API process's memory. A ticket is good for one site, for ``TICKET_TTL_S`` seconds, and
only to *open* a stream; a leaked ticket is useless a minute later. With several API
processes behind a balancer, streams need sticky sessions (or a shared key; not built).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

TICKET_TTL_S = 60


@dataclass(frozen=True)
class Ticket:
    """What a valid ticket vouches for."""

    site_id: str
    principal: str
    expires: int


def new_key() -> bytes:
    """A fresh signing key (per process)."""
    return secrets.token_bytes(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, site_id: str, principal: str, now: float | None = None) -> tuple[str, int]:
    """A ticket for one site and caller, and its expiry (epoch seconds)."""
    expires = int((now or time.time()) + TICKET_TTL_S)
    body = f"{site_id}\n{principal}\n{expires}".encode()
    signature = hmac.new(key, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(signature)}", expires


def verify(key: bytes, ticket: str, site_id: str, now: float | None = None) -> Ticket | None:
    """The ticket's claims when it is genuine, unexpired and for this site; else None."""
    try:
        body_text, signature_text = ticket.split(".", 1)
        body, signature = _unb64(body_text), _unb64(signature_text)
    except ValueError:
        return None
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), signature):
        return None
    try:
        site, principal, expires_text = body.decode().split("\n")
        expires = int(expires_text)
    except ValueError:
        return None
    if site != site_id or expires < (now or time.time()):
        return None
    return Ticket(site, principal, expires)
