"""Where simulated messages go: a real MQTT broker (paced, or faster with a speedup) or files.

The file format (``write_messages``, ``read_messages``) is the kernel's: sitepulse/recording.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from sitepulse.errors import SitePulseError
from sitepulse.recording import Message
from sitepulse.settings import mask_url

MAX_OUTSTANDING = 5_000  # paho stalls near 65,535 un-acked QoS 1 messages (docs/ARCHITECTURE.md §Publisher limits)


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """Host and port of an ``mqtt://host:port`` URL (tcp:// accepted; default port 1883)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise SitePulseError(f"MQTT URL {url!r} is not like mqtt://host:1883")
    try:
        port = parts.port or 1883
    except ValueError:
        raise SitePulseError(f"MQTT URL {url!r} has a bad port") from None
    return parts.hostname, port


def connect(url: str, client_id: str = "", timeout: float = 10.0) -> tuple[mqtt.Client, dict]:
    """A connected paho 2.x client with its network loop running, plus a live ack counter."""
    host, port = parse_mqtt_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    login = urlsplit(url if "://" in url else f"mqtt://{url}")
    if login.username is not None:  # mqtt://device-SITE:password@host:port (a site's device account)
        client.username_pw_set(unquote(login.username), unquote(login.password or ""))
    client.max_inflight_messages_set(1000)
    state = {"acked": 0, "connected": threading.Event(), "rc": None}

    def on_connect(_c, _u, _flags, reason_code, _props):
        state["rc"] = reason_code
        state["connected"].set()

    def on_publish(_c, _u, _mid, _rc, _props):
        state["acked"] += 1

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise SitePulseError(f"cannot reach the MQTT broker at {mask_url(url)} ({exc.strerror or exc})") from None
    client.loop_start()
    if not state["connected"].wait(timeout) or (state["rc"] is not None and state["rc"].is_failure):
        client.loop_stop()
        raise SitePulseError(f"MQTT broker at {mask_url(url)} did not accept the connection ({state['rc']})")
    return client, state


def wait_acked(state: dict, sent: int, timeout: float = 60.0) -> bool:
    """Wait until the broker acknowledged ``sent`` messages (QoS 1 PUBACKs)."""
    deadline = time.monotonic() + timeout
    while state["acked"] < sent:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


@dataclass
class PublishStats:
    """What a publisher did."""

    messages: int
    seconds: float
    stopped: bool = False

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def publish_live(messages: Iterable[Message], mqtt_url: str, speedup: float = 1.0,
                 stop_event: threading.Event | None = None, client_id: str = "",
                 on_message: Callable[[Message], None] | None = None) -> PublishStats:
    """Publish messages with QoS 1, paced by their send time / speedup (0 = as fast as possible).

    Runs until the messages end or ``stop_event`` is set (then every machine seen is marked
    ``offline``); safe to run in a thread during ``sitepulse demo``.
    """
    stop_event = stop_event or threading.Event()
    client, state = connect(mqtt_url, client_id)
    sent = 0
    status_topics: dict[str, None] = {}
    wall0 = time.monotonic()
    stopped = False
    try:
        for msg in messages:
            if speedup and speedup > 0:
                delay = wall0 + msg.t / speedup - time.monotonic()
                if delay > 0 and stop_event.wait(delay):
                    stopped = True
                    break
            if stop_event.is_set():
                stopped = True
                break
            client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
            sent += 1
            if msg.kind == "status":
                status_topics[msg.topic] = None
            if on_message is not None:
                on_message(msg)
            if sent - state["acked"] > MAX_OUTSTANDING:
                wait_acked(state, sent - MAX_OUTSTANDING // 5)
        if stopped:
            for topic in status_topics:
                client.publish(topic, b"offline", qos=1, retain=True)
                sent += 1
        if not wait_acked(state, sent):
            raise SitePulseError(f"MQTT broker at {mask_url(mqtt_url)} stopped acknowledging messages")
    finally:
        client.disconnect()
        client.loop_stop()
    return PublishStats(sent, time.monotonic() - wall0, stopped)


def publish_backlog(pairs: Iterable[tuple[str, bytes]], mqtt_url: str, client_id: str = "") -> PublishStats:
    """Publish ``(topic, payload)`` pairs with QoS 1 as fast as the broker acknowledges them: the backlog a
    benchmark or a fault test has a worker drain (a generator may act between messages, e.g. kill a worker)."""
    client, state = connect(mqtt_url, client_id)
    sent = 0
    started = time.monotonic()
    try:
        for topic, payload in pairs:
            client.publish(topic, payload, qos=1)
            sent += 1
            if sent - state["acked"] > MAX_OUTSTANDING:
                wait_acked(state, sent - MAX_OUTSTANDING // 5)
        if not wait_acked(state, sent):
            raise SitePulseError(f"MQTT broker at {mask_url(mqtt_url)} stopped acknowledging messages")
    finally:
        client.disconnect()
        client.loop_stop()
    return PublishStats(sent, time.monotonic() - started)
