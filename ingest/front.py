"""The layer in front of ingest's native decoder, found through an entry point so ingest imports none of it.

``SITEPULSE_DECODERS_FILE`` turns it on; the package that provides it (decoders/) registers its loader in the
``sitepulse.ingest.front`` group (pyproject.toml), the way services and CLI commands register. What ingest
needs of a front is the ``Front`` protocol below.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Protocol

from ingest.contract import Decoded, Decoder, Reject
from sitepulse.errors import ConfigError
from sitepulse.settings import Settings

ENTRY_POINT_GROUP = "sitepulse.ingest.front"
Publish = Callable[[str, bytes], bool]  # (topic, payload) -> sent: a decoder's command to a device


class Front(Protocol):
    """Decodes every message in the native decoder's place and counts what it routed, after each commit."""

    topic_filters: tuple[str, ...]  # the topics it decodes beyond the native ``sites/...`` ones

    def decode_into(self, out: Decoded, topic: str, payload: bytes, received_at: datetime) -> None: ...

    def count(self, pending: list[tuple], rejects: list[Reject], counters: Any) -> None: ...


def load_front(settings: Settings, native: Decoder, publish: Publish | None = None) -> Front:
    """The installed front built for these settings; without one, a decoders file is a configuration error."""
    loaders = list(entry_points(group=ENTRY_POINT_GROUP))
    if len(loaders) != 1:
        found = "none is installed" if not loaders else f"{len(loaders)} are: {sorted(e.name for e in loaders)}"
        raise ConfigError("SITEPULSE_DECODERS_FILE", f"needs one decoder layer in the {ENTRY_POINT_GROUP} entry "
                                                     f"point group; {found}")
    return loaders[0].load()(settings, native, publish=publish)
