"""Alarm webhooks cannot reach the provider's private network, and one site's silent webhooks do not delay another
site's alarms (issue 35: a SITE token made the API POST anywhere and read back ``HTTP 404``/``Connection refused``;
10 rules to a webhook that never answers delayed every other site's alarms from 3.3 s to 62.8 s).

Everything here targets loopback only: receivers and a silent listener on 127.0.0.1, a handful of requests each.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from registry.alarms import Notification
from registry.webhooks import SiteQueues, WebhookPolicy, WebhookSender, is_public
from tests.security.conftest import SecureApi


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((time.monotonic(), self.headers["Host"], self.path))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[tuple[float, str, str]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.got = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, server.got  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _note(site: str, i: int = 0) -> Notification:
    return Notification("notified", i, f"rule {i}", "supervisor", {"id": i, "site_id": site})


PRIVATE = ["http://127.0.0.1:5432/", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data/",
           "http://[::1]:8080/", "http://localhost:6379/", "http://[::ffff:127.0.0.1]/", "http://192.168.1.1/",
           "http://100.64.0.1/", "http://0.0.0.0:22/", "https://metadata.internal/"]


@pytest.mark.parametrize("url", PRIVATE)
def test_a_site_token_cannot_aim_a_webhook_at_a_private_address(secure: SecureApi, url: str) -> None:
    response = secure.client.post("/api/v1/sites/north/alarm-rules", headers=secure.north, json={
        "name": f"probe {url}"[:100], "min_level": "info", "notify": "nobody", "webhook_url": url})
    assert response.status_code == 422, response.text
    assert "needs an admin's approval" in response.json()["detail"]


def test_a_public_webhook_is_accepted(secure: SecureApi) -> None:
    response = secure.client.post("/api/v1/sites/north/alarm-rules", headers=secure.north, json={
        "name": "public hook", "min_level": "critical", "notify": "ops", "webhook_url": "https://hooks.example.com/x"})
    assert response.status_code == 201, response.text


def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(receiver) -> None:
    port, got = receiver
    for name, resolver in (("hooks.example.com", lambda host, p: ["127.0.0.1"]),  # DNS points inside
                           ("mixed.example.com", lambda host, p: ["93.184.216.34", "127.0.0.1"]),
                           ("localhost", None)):  # the real resolver
        policy = WebhookPolicy(resolver=resolver) if resolver else WebhookPolicy()
        error = WebhookSender(policy, timeout_s=1)(_note("north"), f"http://{name}:{port}/alarm")
        assert error is not None and error.startswith(f"not sent: {name} resolves to a private"), error
        assert str(port) not in error  # nothing about what listens there
    assert got == []


def test_an_approved_destination_is_reached_at_the_address_that_was_checked(receiver) -> None:
    port, got = receiver
    calls: list[str] = []

    def resolver(host: str, p: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    sender = WebhookSender(WebhookPolicy({"hooks.example.com"}, resolver=resolver), timeout_s=2)
    assert sender(_note("north"), f"http://hooks.example.com:{port}/alarm") is None
    assert calls == ["hooks.example.com"]  # resolved once, by the check; the connection used that address
    assert [(host, path) for _, host, path in got] == [(f"hooks.example.com:{port}", "/alarm")]
    approved_port = WebhookSender(WebhookPolicy({f"127.0.0.1:{port}"}), timeout_s=2)
    assert approved_port(_note("north"), f"http://127.0.0.1:{port}/b") is None
    assert approved_port(_note("north"), f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/c") \
        .startswith("not sent")  # another port of the same host is not approved


@pytest.mark.parametrize(("address", "public"), [("8.8.8.8", True), ("2001:4860:4860::8888", True),
                                                 ("127.0.0.1", False), ("::1", False), ("fe80::1%eth0", False),
                                                 ("::ffff:10.0.0.1", False), ("224.0.0.1", False),
                                                 ("100.64.1.1", False), ("fd00::1", False)])
def test_what_counts_as_public(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_one_sites_silent_webhooks_do_not_delay_another_sites(receiver, silent: int) -> None:
    port, got = receiver
    sender = WebhookSender(WebhookPolicy({"127.0.0.1"}), timeout_s=1.0)
    queues = SiteQueues(sender, budget_s=2.0, wait_s=2.0 + 3 * 1.0)
    items = [("slow", _note("slow", i), f"http://127.0.0.1:{silent}/never") for i in range(6)]
    items.append(("fast", _note("fast", 99), f"http://127.0.0.1:{port}/alarm"))
    start = time.monotonic()
    try:
        errors = queues.deliver(items)
    finally:
        queues.close()
    took = time.monotonic() - start
    assert len(got) == 1 and got[0][0] - start < 0.8, f"the fast site waited {got[0][0] - start:.1f} s"
    assert errors[-1] is None
    slow = errors[:-1]
    assert all(e for e in slow) and any("used their 2 s" in e for e in slow), slow  # the budget cut the rest
    assert took < 2.0 + 1.0 + 1.5, f"the pass took {took:.1f} s"  # budget + one timeout + slack, not 6 timeouts


@pytest.fixture
def dripping() -> Iterator[int]:
    """A loopback server that answers one header byte every 0.3 s, forever: no read ever times out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        clients = []
        while not stop.is_set():
            try:
                clients.append(sock.accept()[0])
            except OSError:
                pass
            for client in clients:
                try:
                    client.send(b"H")
                except OSError:
                    pass
            stop.wait(0.3)
        for client in clients:
            client.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_a_webhook_that_drips_its_answer_holds_neither_the_round_nor_other_sites(receiver, dripping: int) -> None:
    port, got = receiver
    queues = SiteQueues(WebhookSender(WebhookPolicy({"127.0.0.1"}), timeout_s=1.0), budget_s=1.0, wait_s=2.0)
    try:
        start = time.monotonic()
        first = queues.deliver([("drip", _note("drip"), f"http://127.0.0.1:{dripping}/"),
                                ("fast", _note("fast"), f"http://127.0.0.1:{port}/a")])
        assert time.monotonic() - start < 3.0  # the round ended on time though the webhook never finished
        assert first[0].startswith("not confirmed") and first[1] is None
        second = queues.deliver([("drip", _note("drip", 1), f"http://127.0.0.1:{dripping}/"),
                                 ("fast", _note("fast", 1), f"http://127.0.0.1:{port}/b")])
        assert second[0].startswith("not sent: this site's previous webhook") and second[1] is None
        assert [path for _, _, path in got] == ["/a", "/b"]
    finally:
        queues.close()
