"""The decoder layer in front of ingest: each topic goes to the native contract or to one route's decoder.

The route of a topic is found once and cached (a fleet has few distinct topics and they repeat), and the
native ``sites/...`` contract is always tried first, so native messages cost one dictionary lookup more
than without decoders. Messages on no route's filter go to the native decoder, which rejects them with
the topic contract's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from paho.mqtt.client import topic_matches_sub

from decoders.config import NATIVE_PREFIX, load_entries
from decoders.discovery import discover_decoders
from decoders.sdk import DecoderContext, DecoderPlugin, MessageDecoder, Publish, Route, emit_reject
from ingest.contract import Decoded, Decoder, Reject
from sitepulse.settings import Settings

NATIVE = "native-json"
CONTRACT_REASON = "contract"  # reason class of rejects made by ingest's own checks
MAX_CACHED_TOPICS = 100_000

Handler = Callable[[Decoded, str, bytes, datetime], None]


class FrontDecoder:
    """Routes each message by topic; ``decode_into`` has the native Decoder's signature."""

    def __init__(self, native: Decoder, routes: list[tuple[Route, MessageDecoder]]) -> None:
        self.native = native
        self.routes = routes
        self.topic_filters = tuple(dict.fromkeys(t for route, _ in routes for t in route.topics))
        self._handlers: dict[str, tuple[str, Handler]] = {}

    def decode_into(self, out: Decoded, topic: str, payload: bytes, received_at: datetime) -> None:
        """Decode one message with the decoder its topic routes to."""
        found = self._handlers.get(topic)
        if found is None:
            found = self._resolve(topic)
        found[1](out, topic, payload, received_at)

    def decoder_of(self, topic: str) -> str:
        """The name of the decoder a topic routes to."""
        found = self._handlers.get(topic)
        return (found or self._resolve(topic))[0]

    def _resolve(self, topic: str) -> tuple[str, Handler]:
        if len(self._handlers) > MAX_CACHED_TOPICS:
            self._handlers.clear()
        found: tuple[str, Handler] = (NATIVE, self.native.decode_into)
        if not topic.startswith(NATIVE_PREFIX):
            for route, decoder in self.routes:
                if any(_matches(f, topic) for f in route.topics):
                    found = (route.decoder, self._guarded(route, decoder))
                    break
        self._handlers[topic] = found
        return found

    def _guarded(self, route: Route, decoder: MessageDecoder) -> Handler:
        limit = self.native.max_payload_bytes
        decode = decoder.decode

        def guarded(out: Decoded, topic: str, payload: bytes, received_at: datetime) -> None:
            if len(payload) > limit:
                emit_reject(out, topic, payload, received_at,
                            f"{route.decoder}: payload is {len(payload)} bytes, over the {limit}-byte limit",
                            "too-large", route.site_id)
                return
            decode(out, topic, payload, received_at)

        return guarded

    def count(self, pending: list[tuple], rejects: list[Reject], counters: Any) -> None:
        """Messages per decoder and rejects per decoder and reason class, after a batch committed."""
        messages = counters.decoder_messages
        for message in pending:
            if message[1] is not None:
                name = self.decoder_of(message[0])
                messages[name] = messages.get(name, 0) + 1
        for reject in rejects:
            codes = counters.decoder_rejects.setdefault(self.decoder_of(reject.topic), {})
            code = reject.code or CONTRACT_REASON
            codes[code] = codes.get(code, 0) + 1


def _matches(topic_filter: str, topic: str) -> bool:
    try:
        return topic_matches_sub(topic_filter, topic)
    except ValueError:
        return False


def build_front(native: Decoder, routes: list[Route], plugins: dict[str, DecoderPlugin],
                publish: Publish | None = None) -> FrontDecoder:
    """A FrontDecoder for the MQTT routes (feeds are pulled elsewhere: decoders/feeds.py)."""
    context = DecoderContext(publish) if publish is not None else DecoderContext()
    built = [(route, plugins[route.decoder].create(route, context))
             for route in routes if plugins[route.decoder].transport == "mqtt"]
    return FrontDecoder(native, built)


def load_front(settings: Settings, native: Decoder, publish: Publish | None = None) -> FrontDecoder:
    """The worker's front: decoders discovered (SITEPULSE_LOAD_DECODERS), routes from SITEPULSE_DECODERS_FILE.

    Registered as ingest's front in the ``sitepulse.ingest.front`` entry point group (ingest/front.py)."""
    plugins = discover_decoders(settings.load_decoders)
    return build_front(native, load_entries(settings.decoders_file, plugins), plugins, publish)
