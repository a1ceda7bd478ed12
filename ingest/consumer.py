"""MQTT consumption on paho-mqtt 2.x: a persistent QoS 1 session whose messages are acked only after commit.

The paho network thread does nothing but put ``(topic, payload, mid, qos, epoch, arrival)``
on a queue; the worker decodes and writes, then calls :meth:`MqttConsumer.ack` for the
committed messages in arrival order. Each (re)connection has an *epoch*: acks of messages
received on an earlier connection are dropped (the broker re-delivers those and the writer
stores them once), so a stale ack can never acknowledge a different message reusing its id.

Bounded memory: with MQTT v5 the broker sends at most Receive Maximum (65535) unacked
messages; with 3.1.1 the network thread stops reading once ``high_water`` messages are queued.

Receive path: paho turns every PUBLISH into an ``MQTTMessage`` (and, on v5, a ``Properties``
object), logs it, matches it against filtered callbacks and takes two locks before calling
``on_message``; on v5 that costs about as much as everything else ingest does per message.
:class:`LeanClient` decodes the common PUBLISH (QoS 0/1, valid UTF-8 topic, no v5 properties)
itself and hands the tuple straight to the queue; anything else (QoS 2, properties, a paho
without the expected internals) goes through paho's own path to the same ``on_message``.
"""

from __future__ import annotations

import logging
import queue
import ssl
import sys
import threading
import time
from array import array
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.topics import BIRTH_FILTER, STATUS_FILTER, TELEMETRY_FILTER, Partition, shared, site_filters
from sitepulse.errors import ConfigError

log = logging.getLogger(__name__)

SETTING = "SITEPULSE_MQTT_URL"
SESSION_EXPIRY_S = 14 * 86_400  # matches the shipped broker's persistent_client_expiration
RECEIVE_MAXIMUM = 65_535
KEEPALIVE_S = 30
PUBACK = 0x40
UNSUPPORTED_PROTOCOL = (1, 132)  # 3.1.1 and v5 CONNACK codes for "unsupported protocol version"

# topic, payload, mid, qos, epoch, arrival (epoch s); payload None: another partition's message, ack it unread
Inbound = tuple[str, bytes | None, int, int, int, float]
MQTT_ERR_SUCCESS = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS


def decode_publish(header: int, packet: bytes | bytearray, v5: bool) -> tuple[str, bytes, int, int] | None:
    """(topic, payload, mid, qos) of a PUBLISH body, or None for anything paho must handle itself.

    None for: QoS 2 (needs PUBREC state), v5 properties present (topic alias, expiry, user
    properties...), a topic that is not valid UTF-8, or a malformed packet.
    """
    qos = (header & 0x06) >> 1
    if qos == 2 or len(packet) < 2:
        return None
    end = 2 + ((packet[0] << 8) | packet[1])
    mid = 0
    if qos:
        if len(packet) < end + 2:
            return None
        mid = (packet[end] << 8) | packet[end + 1]
        start = end + 2
    else:
        start = end
    if v5:
        if len(packet) <= start or packet[start] != 0:  # property length 0 is one zero byte
            return None
        start += 1
    elif end == 2:  # an empty topic is a protocol error on 3.1.1: paho reports it
        return None
    if len(packet) < start:
        return None
    try:
        topic = packet[2:end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return topic, bytes(packet[start:]), mid, qos


class LeanClient(mqtt.Client):
    """paho Client whose common PUBLISH goes straight to ``lean_intake`` (see the module docstring)."""

    lean_intake: Any = None  # callable(topic, payload, mid, qos) -> None, set by MqttConsumer
    lean_received = 0  # messages taken by the lean path (tests assert it is used)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # paho keeps the packet being read in _in_packet and calls _handle_publish for a PUBLISH (2.0-2.2);
        # pyproject.toml pins paho to 2.2.x and tests/ingest/test_paho_contract.py fails loudly if these change.
        self._lean_ok = all(hasattr(self, name) for name in ("_in_packet", "_protocol", "_manual_ack"))

    def message_callback_add(self, sub: str, callback: Any) -> None:
        """Filtered callbacks need paho's own dispatch: the lean path turns itself off."""
        self._lean_ok = False
        super().message_callback_add(sub, callback)

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        intake = self.lean_intake
        if intake is not None and self._lean_ok and self._manual_ack:
            in_packet = self._in_packet
            decoded = decode_publish(in_packet["command"], in_packet["packet"], self._protocol == mqtt.MQTTv5)
            if decoded is not None:
                self.lean_received += 1
                intake(*decoded)
                return MQTT_ERR_SUCCESS  # manual_ack: the worker PUBACKs after commit
        return super()._handle_publish()


def broker_address(url: str) -> tuple[str, int, str | None, str | None, bool]:
    """host, port, user, password, tls from mqtt://[user:pass@]host:port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(SETTING, "port is not a number") from None
    tls = parts.scheme == "mqtts"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if not parts.hostname:
        raise ConfigError(SETTING, "has no host")
    return parts.hostname, port or (8883 if tls else 1883), user, password, tls


class MqttConsumer:
    """One persistent MQTT session feeding a queue; v5 (3.1.1 as fallback).

    Subscriptions are plain unless ``share_group`` is set: Mosquitto 2.0 restores a persistent session's
    plain subscriptions after a restart but not its ``$share`` ones. Several workers split the stream by
    ``partitions``: each session receives every message, and messages of machines another worker owns are
    queued with payload None, so the worker acknowledges them unread in arrival order; the owner's own
    session holds its copy until the owner has committed it.

    ``sites`` (site-routed mode, ``SITEPULSE_INGEST_SITES``): the session subscribes to those sites' topics
    only, so the broker gives each site's messages to one worker; the other listed sites' filters and the
    wildcard ones are unsubscribed (left over from an earlier assignment), and a message of another site that
    still arrives is acknowledged unread like another partition's.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        inbox: queue.SimpleQueue,
        *,
        protocol: str = "auto",
        share_group: str | None = None,
        partitions: tuple[Partition, ...] = (),
        high_water: int = 200_000,
        extra_filters: tuple[str, ...] = (),
        sites: tuple[str, ...] | None = None,
        other_sites: tuple[str, ...] = (),
    ) -> None:
        if sites is not None and (share_group or partitions):
            raise ConfigError("SITEPULSE_INGEST_SITES", "routes sites to workers itself; unset SITEPULSE_INGEST_SHARED")
        if any(p.count <= 1 for p in partitions):  # "0/1" owns everything
            partitions = ()
        if share_group and partitions:
            raise ConfigError("SITEPULSE_INGEST_PARTITION", "is for plain subscriptions; unset SITEPULSE_INGEST_SHARED")
        self.url = url
        self.client_id = client_id
        self.inbox = inbox
        self.share_group = share_group
        self.partitions = partitions  # stores what any of them owns
        self.extra_filters = extra_filters  # decoders' topics (decoders/README.md), subscribed plainly
        self.sites = sites  # site-routed mode: the sites this session subscribes to (None: every site)
        self.other_sites = other_sites  # the listed sites of other workers, unsubscribed at connect
        self._own_sites = frozenset(sites) if sites is not None else None
        self._filters: list[str] = []  # what the last SUBSCRIBE asked for, in order (for SUBACK reasons)
        self.skipped = 0  # messages of another partition, acknowledged unread
        self.high_water = high_water
        self.protocol = protocol
        self.version: str | None = None
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()
        self._epoch = 0
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._stopping = threading.Event()
        self._intake_open = True
        self.reconnects = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Connect (v5, else 3.1.1) and start the network thread; one-line error if unreachable."""
        order = {"auto": ["5", "3.1.1"], "5": ["5"], "3.1.1": ["3.1.1"]}[self.protocol]
        for version in order:
            self._start_version(version, timeout)
            if self._connected.is_set():
                self.version = version
                log.info("MQTT %s session %s connected to %s", version, self.client_id, self._where())
                return
            self._shutdown_client()
            if self._connect_error != "unsupported protocol":
                break
        raise ConfigError(SETTING, f"cannot connect to {self._where()}: {self._connect_error or 'timed out'}")

    def _where(self) -> str:
        host, port, *_ = broker_address(self.url)
        return f"{host}:{port}"

    def _start_version(self, version: str, timeout: float) -> None:
        host, port, user, password, tls = broker_address(self.url)
        v5 = version == "5"
        client = LeanClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if user is not None:
            client.username_pw_set(user, password)
        if tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_pre_connect = self._on_pre_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.lean_intake = self._intake
        self._client = client
        self._connected.clear()
        self._connect_error = None
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
        try:
            if v5:
                client.connect(host, port, keepalive=KEEPALIVE_S, clean_start=False, properties=properties)
            else:
                client.connect(host, port, keepalive=KEEPALIVE_S)
        except (OSError, ssl.SSLError) as exc:
            self._connect_error = str(exc) or type(exc).__name__
            return
        client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._connected.is_set() and self._connect_error is None:
            self._connected.wait(0.05)

    def close_intake(self) -> None:
        """Stop queueing new messages (they stay unacked, so the broker re-delivers them later)."""
        self._intake_open = False

    def stop(self) -> None:
        """Disconnect cleanly; the persistent session keeps anything not yet acked."""
        self._stopping.set()
        self._shutdown_client()

    def _shutdown_client(self) -> None:
        client = self._client
        if client is None:
            return
        with self._lock:
            self._epoch += 1
            self._connected.clear()
        client.disconnect()
        client.loop_stop()
        self._client = None

    # -- paho callbacks (network thread) -----------------------------------------------------------
    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        with self._lock:
            self._epoch += 1

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._connect_error = (
                "unsupported protocol" if reason.value in UNSUPPORTED_PROTOCOL else f"refused: {reason}"
            )
            if not self._connected.is_set() and self._connect_error != "unsupported protocol":
                log.warning("MQTT connection refused: %s", reason)
            return
        with self._lock:
            self._epoch += 1
        if self.version is not None:
            self.reconnects += 1
            log.info("MQTT reconnected (session present: %s)", flags.session_present)
        if self.sites is not None:
            native = [f for site in self.sites for f in site_filters(site)]
            others = [f for site in self.other_sites for f in site_filters(site)]
            stale = [f for f in (TELEMETRY_FILTER, BIRTH_FILTER, STATUS_FILTER, *others) if f not in self.extra_filters]
            client.unsubscribe(stale)  # no subscription to remove is fine (reason 0x11)
        else:
            telemetry = shared(TELEMETRY_FILTER, self.share_group) if self.share_group else TELEMETRY_FILTER
            native = [telemetry, BIRTH_FILTER, STATUS_FILTER]
        self._filters = [*native, *self.extra_filters]
        if self._filters:
            client.subscribe([(f, 1) for f in self._filters])
        else:
            log.warning("no site of SITEPULSE_INGEST_SITES falls to this worker: it subscribes to nothing")
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        with self._lock:
            self._epoch += 1
            self._connected.clear()
        if not self._stopping.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects with backoff", reason)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list, properties: Any
    ) -> None:
        if reasons and reasons[0].is_failure and self.share_group and len(reasons) == len(self._filters):
            log.warning(
                "broker refused the shared subscription (%s); subscribing to %s directly,"
                " so run one worker only",
                reasons[0],
                TELEMETRY_FILTER,
            )
            client.subscribe(TELEMETRY_FILTER, 1)
            reasons = reasons[1:]
            filters = self._filters[1:]
        else:
            filters = self._filters
        extra = set(self.extra_filters)
        for topic_filter, reason in zip(filters, reasons, strict=False):
            if reason.is_failure:
                log.warning("broker refused the subscription to %s (%s)%s", topic_filter, reason,
                            ": its decoder route receives nothing" if topic_filter in extra else "")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "backslashreplace")
        self._intake(topic, message.payload, message.mid, message.qos)

    def _intake(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        if not self._intake_open:
            return
        parts, own_sites = self.partitions, self._own_sites
        if (parts and not any(p.owns(topic) for p in parts)) or (
            own_sites is not None and topic.startswith("sites/") and topic.split("/", 2)[1] not in own_sites
        ):
            self.skipped += 1
            self.inbox.put((topic, None, mid, qos, self._epoch, time.time()))
        else:
            self.inbox.put((topic, payload, mid, qos, self._epoch, time.time()))
        if self.version == "3.1.1" and self.inbox.qsize() > self.high_water:
            while self.inbox.qsize() > self.high_water // 2 and not self._stopping.is_set():
                time.sleep(0.01)

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> bool:
        """Publish a command on this session (a decoder's request, e.g. a Sparkplug rebirth); False if offline."""
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        return client.publish(topic, payload, qos).rc == MQTT_ERR_SUCCESS

    # -- acknowledgement (worker thread) -----------------------------------------------------------
    def ack(self, messages: list[Inbound]) -> int:
        """PUBACK committed messages in arrival order; those from an earlier connection are skipped."""
        sent = 0
        with self._lock:
            client = self._client
            if client is None or not self._connected.is_set():
                return 0
            epoch = self._epoch
            mids = [m[2] for m in messages if m[3] == 1 and m[4] == epoch]
            if mids:
                _send_pubacks(client, mids)
                sent = len(mids)
        return sent


def _send_pubacks(client: mqtt.Client, mids: list[int]) -> None:
    """PUBACK each mid, in order; coalesced into one socket write when paho's internals allow it.

    paho's ``ack()`` queues one packet and wakes its loop once per message, which costs as much
    as receiving it; the PUBACKs are sent in the same order either way.
    """
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None or len(mids) < 2:
        for mid in mids:
            client.ack(mid, 1)
        return
    ids = array("H", mids)
    if sys.byteorder == "little":
        ids.byteswap()
    raw = ids.tobytes()
    packet = bytearray(4 * len(mids))
    packet[0::4] = bytes([PUBACK]) * len(mids)
    packet[1::4] = b"\x02" * len(mids)
    packet[2::4] = raw[0::2]
    packet[3::4] = raw[1::2]
    queue_packet(PUBACK, bytes(packet), 0, 0)
