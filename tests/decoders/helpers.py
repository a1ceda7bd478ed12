"""Building routes and decoding messages in tests, without a broker or database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from decoders.config import parse_entries
from decoders.discovery import discover_decoders
from decoders.front import FrontDecoder, build_front
from ingest.columns import snap
from ingest.contract import RESOLUTION, Decoded, Decoder

NOW = datetime.now(UTC)


def front_for(config: dict[str, Any], sent: list[tuple[str, bytes]] | None = None) -> FrontDecoder:
    """A FrontDecoder for a decoders file given as a dict; commands it publishes land in ``sent``."""
    plugins = discover_decoders()
    routes = parse_entries(config, "test.toml", plugins)  # type: ignore[arg-type]
    box = sent if sent is not None else []
    return build_front(Decoder(), routes, plugins, publish=lambda t, p: box.append((t, p)) or True)


def decode(front: FrontDecoder, *messages: tuple[str, bytes]) -> Decoded:
    """Decode messages in order into one batch, as a worker does."""
    out = Decoded()
    for topic, payload in messages:
        front.decode_into(out, topic, payload, NOW)
    out.finish()
    return out


def samples(out: Decoded) -> list[dict[str, Any]]:
    """Rows as dicts of their non-null columns (ts as epoch seconds)."""
    names = ("site_id", "machine_id", "ts", "seq", "received_at", "lat", "lon", "speed_kmh", "heading_deg",
             "payload_kg", "fuel_used_l", "engine_hours", "engine_on", "extra")
    found = []
    for row in out.rows:
        sample = {k: v for k, v in zip(names, row, strict=True) if v is not None and k not in ("received_at", "seq")}
        sample["ts"] = sample["ts"].timestamp()
        found.append(sample)
    return found


def on_grid(field: str, value: float) -> float:
    """``value`` as ingest stores ``field``: on the contract's binary grid (ingest.contract.RESOLUTION)."""
    return snap(value, RESOLUTION[field])
