"""Delivering alerts: stored once per key in ``service_alerts``, then published to MQTT.

Storing first (in the service's transaction) and publishing after commit means a replay
never sends an alert twice and a crash between commit and publish is caught up on restart
(rows with ``published_at IS NULL``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as mqtt
import psycopg
from psycopg.types.json import Jsonb

from microservices.sdk import Alert, AlertEnd

log = logging.getLogger(__name__)


def alert_topic(site_id: str, channel: str) -> str:
    """The MQTT contract's alert topic."""
    return f"sites/{site_id}/alerts/{channel}"


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes) -> None: ...


def store_alerts(conn: psycopg.Connection, site_id: str, service: str, alerts: Sequence[Alert],
                 ends: Sequence[AlertEnd] | None = None) -> int:
    """Insert alerts whose key is new, then record the alert ends (``ends``, or ``alerts.ends`` of an
    ``Outputs.alerts`` list); returns how many alerts were new.

    An end is written as ``data.ended_at`` / ``data.end_reason`` of the alert with that key (an alert raised with
    ``ended_at`` carries it from the start); the alarm supervisor clears every alert whose end has come
    (``registry/alarms.py``), whatever service raised it. The first end recorded for a key stands.
    """
    new = 0
    if alerts:
        # one statement for the batch, in the batch's order (ids, and so publishing, follow it); a key twice in
        # the batch is stored once, as the first
        new = len(conn.execute(
            "INSERT INTO service_alerts (site_id, service, key, level, at, machine_id, message, data) "
            "SELECT %s, %s, a.key, a.level, a.at, a.machine_id, a.message, a.data "
            "FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::jsonb[])"
            " WITH ORDINALITY AS a(key, level, at, machine_id, message, data, n) ORDER BY a.n "
            "ON CONFLICT (site_id, service, key) DO NOTHING RETURNING id",
            (site_id, service, [a.key for a in alerts], [a.level for a in alerts], [a.at for a in alerts],
             [a.machine_id for a in alerts], [a.message for a in alerts], [_stored_data(a) for a in alerts]),
        ).fetchall())
    ends = getattr(alerts, "ends", ()) if ends is None else ends
    if ends:
        conn.execute(
            "UPDATE service_alerts a SET data = a.data || jsonb_build_object('ended_at', e.at, 'end_reason', e.reason)"
            " FROM unnest(%s::text[], %s::timestamptz[], %s::text[]) AS e(key, at, reason)"
            " WHERE a.site_id = %s AND a.service = %s AND a.key = e.key AND NOT a.data ? 'ended_at'",
            ([e.key for e in ends], [e.at for e in ends], [e.reason for e in ends], site_id, service),
        )
    return new


def _stored_data(alert: Alert) -> Jsonb:
    """The alert's data, with ``ended_at`` when it was raised over (an ``ended_at`` already in the data stands)."""
    return Jsonb(alert.data if alert.ended_at is None else {"ended_at": alert.ended_at.isoformat(), **alert.data})


def alert_count(conn: psycopg.Connection, site_id: str, service: str, cap: int) -> int:
    """How many alerts a service has raised at a site, counted up to ``cap`` (the unique index's prefix: the scan
    stops at ``cap``, so a card's count costs the same however long the history)."""
    row = conn.execute("SELECT count(*) FROM (SELECT 1 FROM service_alerts WHERE site_id = %s AND service = %s"
                       " LIMIT %s) a", (site_id, service, cap)).fetchone()
    return int(row[0]) if row else 0


def ended_alerts(conn: psycopg.Connection, now: datetime) -> list[tuple[int, datetime, str]]:
    """Active (uncleared) alerts of every service whose condition ended at or before ``now``: (id, ended at,
    reason), for the alarm supervisor's auto-clear."""
    return conn.execute(
        "SELECT id, (data ->> 'ended_at')::timestamptz, coalesce(nullif(data ->> 'end_reason', ''),"
        " format('condition over at %%s UTC', to_char((data ->> 'ended_at')::timestamptz AT TIME ZONE 'UTC',"
        " 'HH24:MI:SS'))) FROM service_alerts"
        " WHERE cleared_at IS NULL AND data ? 'ended_at' AND (data ->> 'ended_at')::timestamptz <= %s",
        (now,),
    ).fetchall()


def publish_pending(conn: psycopg.Connection, publisher: Publisher | None, service: str, channel: str) -> int:
    """Publish this service's stored, unpublished alerts and mark them; returns how many."""
    if publisher is None:
        return 0
    rows = conn.execute(
        "SELECT id, site_id, key, level, at, machine_id, message, data, created_at FROM service_alerts "
        "WHERE service = %s AND published_at IS NULL ORDER BY id LIMIT 1000",
        (service,),
    ).fetchall()
    for id_, site_id, key, level, at, machine_id, message, data, created_at in rows:
        payload = orjson.dumps(
            {
                "id": id_,
                "service": service,
                "key": key,
                "level": level,
                "at": at,
                "machine_id": machine_id,
                "message": message,
                "data": data,
                "raised_at": created_at,
            }
        )
        publisher.publish(alert_topic(site_id, channel), payload)
    if rows:
        conn.execute(
            "UPDATE service_alerts SET published_at = now() WHERE id = ANY(%s)", ([r[0] for r in rows],)
        )
    return len(rows)


class MqttPublisher:
    """A QoS 1 publisher that reconnects by itself (paho's loop thread)."""

    def __init__(self, url: str, client_id: str = "") -> None:
        parts = urlsplit(url)
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if parts.username:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            self._client.tls_set()
        self._client.reconnect_delay_set(1, 30)
        self._connected = threading.Event()
        self._client.on_connect = lambda *a, **k: self._connected.set()
        self._client.connect_async(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        self._connected.wait(5)
        self._client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
