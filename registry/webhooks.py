"""Alarm webhooks go to the public internet only, unless an admin approved the destination (issue 35: SSRF).

A site token may add an alarm rule with a webhook, and the alarm history shows how each delivery went: without a
check, the API POSTed wherever it was told (the provider's metadata service, databases on the private network)
and reported ``HTTP 404`` or ``Connection refused`` back, a port scanner of the provider's network.

So every delivery resolves the destination's name itself and refuses it when any address is not globally
routable (private, loopback, link-local, shared, reserved, multicast; IPv4-mapped IPv6 included), then connects
to the address it checked (the name cannot resolve elsewhere between check and connect: DNS rebinding), with
TLS still verified against the name, no redirects and no proxies from the environment. Destinations on private
networks are allowed only when the operator lists them in ``SITEPULSE_WEBHOOK_APPROVED_HOSTS`` (``host`` or
``host:port``, comma-separated). A refusal names the rule's host, never what is listening there.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import httpx

WEBHOOK_TIMEOUT_S = 3.0
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP)."""
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def is_public(address: str) -> bool:
    """True for a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def approved_hosts(text: str | None) -> frozenset[str]:
    """``SITEPULSE_WEBHOOK_APPROVED_HOSTS`` as lower-case ``host`` / ``host:port`` entries."""
    return frozenset(part.strip().lower() for part in (text or "").split(",") if part.strip())


class WebhookPolicy:
    """Where webhooks may go: public addresses, and the destinations an admin approved."""

    def __init__(self, approved: Iterable[str] = (), resolver: Resolver = resolve) -> None:
        self.approved = frozenset(a.lower() for a in approved)
        self.resolver = resolver

    def _target(self, url: str) -> tuple[httpx.URL, str, int]:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("a webhook URL must be http:// or https:// with a host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return parsed, parsed.host.lower(), port

    def is_approved(self, host: str, port: int) -> bool:
        return host in self.approved or f"{host}:{port}" in self.approved

    def refusal(self, url: str) -> str | None:
        """Why a rule may not use ``url``, judged without resolving names (a literal private address, localhost);
        the delivery checks what the name resolves to."""
        try:
            _, host, port = self._target(url)
        except ValueError as exc:
            return str(exc)
        if self.is_approved(host, port):
            return None
        try:
            literal = not is_public(host.strip("[]"))
        except ValueError:  # a name
            literal = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
        if literal:
            return (f"webhooks may not go to {host}: a private, loopback or link-local destination needs an admin's"
                    " approval (SITEPULSE_WEBHOOK_APPROVED_HOSTS)")
        return None

    def pinned(self, url: str) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
        """The URL with its host replaced by a checked address, the Host header and the TLS name to send;
        ValueError naming the host when no address may be used."""
        parsed, host, port = self._target(url)
        try:
            addresses = self.resolver(host, port)
        except OSError:
            raise ValueError(f"not sent: {host} does not resolve") from None
        if not self.is_approved(host, port):
            if not addresses or not all(is_public(a) for a in addresses):
                raise ValueError(f"not sent: {host} resolves to a private, loopback or link-local address and is"
                                 " not approved (SITEPULSE_WEBHOOK_APPROVED_HOSTS)")
        if not addresses:
            raise ValueError(f"not sent: {host} does not resolve")
        address = addresses[0].split("%", 1)[0]
        headers = {"Host": parsed.netloc.decode("ascii")}
        extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
        return parsed.copy_with(host=address), headers, extensions


class WebhookSender:
    """Delivers a notification as a JSON POST where the policy allows; returns the error in a few words, or None."""

    def __init__(self, policy: WebhookPolicy, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
        self.policy = policy
        self.timeout_s = timeout_s

    def __call__(self, notification: Any, url: str | None) -> str | None:
        if not url:
            return None
        try:
            target, headers, extensions = self.policy.pinned(url)
        except ValueError as exc:
            return str(exc)[:200]
        try:
            with httpx.Client(timeout=self.timeout_s, follow_redirects=False, trust_env=False) as client:
                request = client.build_request("POST", target, json=notification.body(), headers=headers,
                                               extensions=extensions)
                response = client.send(request)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
        return None if response.is_success else f"HTTP {response.status_code}"


Send = Callable[[Any, str | None], str | None]  # (notification, url) -> error or None


class SiteQueues:
    """Deliveries with one queue per site, each on a worker of its own with time limits (issue 35: ten silent
    webhooks of one site delayed every other site's alarms from 3.3 s to 62.8 s).

    Per round: a site's items go out in order until it has used ``budget_s`` (the rest are not sent); the round
    waits at most ``budget_s`` plus one delivery's timeouts for any site, then answers for the sites still busy
    as not confirmed. A site whose previous round is still running (a webhook dripping its answer) gets nothing
    new sent, so a site holds at most one worker; other sites are never held up.
    """

    def __init__(self, send: Send, budget_s: float, wait_s: float, max_workers: int = 16) -> None:
        self.send, self.budget_s, self.wait_s = send, budget_s, wait_s
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="webhooks")
        self.running: dict[str, Future[list[str | None]]] = {}

    def _site(self, items: list[tuple[Any, str | None]]) -> list[str | None]:
        deadline = time.monotonic() + self.budget_s
        errors: list[str | None] = []
        for note, url in items:
            if url and time.monotonic() > deadline:
                errors.append(f"not sent: this site's webhooks used their {self.budget_s:g} s this round")
            else:
                errors.append(self.send(note, url))
        return errors

    def deliver(self, items: list[tuple[str, Any, str | None]]) -> list[str | None]:
        """(site, note, url) items delivered; the error of each (None when delivered or without a webhook)."""
        by_site: dict[str, list[int]] = {}
        for i, (site, _, _) in enumerate(items):
            by_site.setdefault(site, []).append(i)
        errors: list[str | None] = [None] * len(items)
        jobs: dict[str, Future[list[str | None]]] = {}
        for site, indices in by_site.items():
            previous = self.running.get(site)
            if previous is not None and not previous.done():
                for i in indices:
                    if items[i][2]:
                        errors[i] = "not sent: this site's previous webhook is still answering"
                continue
            jobs[site] = self.running[site] = self.pool.submit(self._site, [items[i][1:] for i in indices])
        wait(jobs.values(), timeout=self.wait_s)
        for site, job in jobs.items():
            if job.done():
                for i, error in zip(by_site[site], job.result(), strict=True):
                    errors[i] = error
            else:
                for i in by_site[site]:
                    if items[i][2]:
                        errors[i] = "not confirmed: the webhook was still answering when the round ended"
        for site in [s for s, job in self.running.items() if job.done()]:
            del self.running[site]
        return errors

    def close(self) -> None:
        """Stop without waiting for webhooks still answering (their threads end with their connections)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
