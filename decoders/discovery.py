"""Finding decoders: the entry-point group ``sitepulse.decoders``, limited by ``SITEPULSE_LOAD_DECODERS``.

Built-in decoders register exactly like third-party ones (``pyproject.toml``), as services do.
"""

from __future__ import annotations

from decoders.sdk import ENTRY_POINT_GROUP, DecoderPlugin
from sitepulse.errors import SitePulseError
from sitepulse.plugins import load_plugins


def discover_decoders(load: str | None = None) -> dict[str, DecoderPlugin]:
    """Installed decoders by name; ``load`` (comma-separated entry-point names) limits which are imported, and a
    decoder whose package fails to import is reported in one line and skipped."""
    found: dict[str, DecoderPlugin] = {}
    for entry_name, loaded in load_plugins(ENTRY_POINT_GROUP, load, "SITEPULSE_LOAD_DECODERS").items():
        plugin = loaded() if isinstance(loaded, type) else loaded
        if not isinstance(plugin, DecoderPlugin) or not plugin.name:
            raise SitePulseError(f"entry point {entry_name!r} in {ENTRY_POINT_GROUP} is not a named DecoderPlugin")
        if plugin.name in found:
            raise SitePulseError(f"two installed decoders are called {plugin.name!r}")
        found[plugin.name] = plugin
    return found
