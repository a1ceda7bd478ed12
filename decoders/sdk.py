"""The decoder plugin surface, one file: what a decoder declares and the few calls it makes.

A decoder turns one input family (Sparkplug B, a tracker's own JSON, an OEM's ISO 15143-3 feed) into
SitePulse's normalised sample: the MQTT contract v1 sample object (``ts``, ``lat``, ``lon``, ``speed_kmh``,
``heading_deg``, ``payload_kg``, ``fuel_used_l``, ``engine_hours``, ``engine_on``; docs in
``ingest/contract.py``) of one site and machine. Ingest then checks and stores those samples exactly as if the
machine had published them on ``sites/{site}/machines/{machine}/telemetry``: same rules, same reasons, same
batch, acknowledged to the broker only after the database commit.

A plugin is found through the entry-point group ``sitepulse.decoders`` and points at a :class:`DecoderPlugin`
subclass: ``name``, ``version``, ``summary``, ``transport`` (``mqtt`` or ``http``), an ``Options`` pydantic
model (the ``options`` table of a route in the decoders file) and ``create(route, context)`` returning the
object that decodes. For MQTT that object has ``decode(out, topic, payload, received_at)``; it never raises
on input: every message becomes samples (:func:`emit_samples`), a status (:func:`emit_status`), or a reject
with a readable reason and a short reason class (:func:`emit_reject`). A decoder may keep state (Sparkplug
aliases); it lives in the one worker that owns the topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from ingest.contract import Decoded, Reject, Status
from ingest.fields import MEASURED_FIELDS
from ingest.topics import ID_PATTERN

ENTRY_POINT_GROUP = "sitepulse.decoders"
FIELDS = MEASURED_FIELDS  # what a decoder may set on a sample (ingest/fields.py)

Publish = Callable[[str, bytes], bool]  # (topic, payload) -> sent; a decoder's command to a device


class StrictOptions(BaseModel):
    """Base of a decoder's options: unknown keys are a mistake the site manager sees, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Route:
    """Where a decoder applies: a site, MQTT topic filters or a feed URL, and the decoder's own options."""

    decoder: str
    site_id: str
    topics: tuple[str, ...] = ()
    options: Any = None  # the plugin's Options instance
    name: str = ""  # "decoder#index" in the decoders file, for messages


@dataclass
class DecoderContext:
    """What the host hands a decoder: a way to send commands to devices (no-op where there is no broker)."""

    publish: Publish = field(default=lambda topic, payload: False)


class MessageDecoder(Protocol):
    """What ``create`` returns for MQTT: one call per message, appending to the batch ``out``."""

    def decode(self, out: Decoded, topic: str, payload: bytes, received_at: datetime) -> None: ...


class DecoderPlugin:
    """Declaration of one decoder; subclass it and register the class under ``sitepulse.decoders``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    summary: ClassVar[str] = ""
    transport: ClassVar[Literal["mqtt", "http"]] = "mqtt"
    Options: ClassVar[type[BaseModel]] = StrictOptions

    def create(self, route: Route, context: DecoderContext) -> Any:
        """The object that decodes this route's messages (MQTT) or pulls its feed (HTTP)."""
        raise NotImplementedError


def bad_id(value: str) -> str | None:
    """Why ``value`` cannot be a site or machine id, or None when it can."""
    if ID_PATTERN.fullmatch(value):
        return None
    return f"{value[:80]!r} is not 1-64 characters of A-Z a-z 0-9 _ . -"


def emit_samples(
    out: Decoded, topic: str, payload: bytes, site_id: str, machine_id: str, received_at: datetime,
    samples: list[dict], positions: list[int] | None = None,
) -> None:
    """Hand normalised samples of one machine to ingest's checks (the ids must already be valid).

    ``positions``: where each sample was in the message, when the decoder rejected some readings itself,
    so the contract's rejects name the right ``sample N``.
    """
    out.add_samples(topic, payload, site_id, machine_id, received_at, samples, positions)


def emit_reject(
    out: Decoded, topic: str, payload: bytes, received_at: datetime, reason: str, code: str,
    site_id: str | None = None, machine_id: str | None = None,
) -> None:
    """Record a message the decoder cannot turn into samples: ``reason`` for people, ``code`` for the metrics."""
    out.reject(Reject(received_at, topic, payload, reason, site_id, machine_id, code))


def emit_status(out: Decoded, site_id: str, machine_id: str, status: str, at: datetime) -> None:
    """A machine went ``online`` or ``offline`` (the status contract; an older status never wins)."""
    out.statuses.append(Status(site_id, machine_id, status, at))


def as_field(name: str, value: Any) -> Any:
    """A decoded value in the type the contract wants: floats for numbers, booleans for ``engine_on``.

    Anything else is passed through unchanged so the contract's checks reject it with their reason.
    """
    kind = type(value)
    if name == "engine_on":
        if kind is int and value in (0, 1):
            return bool(value)
        if kind is str and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        return value
    if kind is int:
        return float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            return value
    return value


_BOOL_WORDS = {"true": True, "false": False, "on": True, "off": False, "1": True, "0": False}
