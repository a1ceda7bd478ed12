"""Finding decoders: the entry-point group ``sitepulse.decoders``, limited by ``SITEPULSE_LOAD_DECODERS``.

Built-in decoders register exactly like third-party ones (``pyproject.toml``), as services do.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from decoders.sdk import ENTRY_POINT_GROUP, DecoderPlugin
from sitepulse.errors import SitePulseError


def discover_decoders(load: str | None = None) -> dict[str, DecoderPlugin]:
    """Installed decoders by name; ``load`` (comma-separated names) limits which load."""
    wanted = {n.strip() for n in load.split(",") if n.strip()} if load else None
    found: dict[str, DecoderPlugin] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        plugin = loaded() if isinstance(loaded, type) else loaded
        if not isinstance(plugin, DecoderPlugin) or not plugin.name:
            raise SitePulseError(f"entry point {entry.name!r} in {ENTRY_POINT_GROUP} is not a named DecoderPlugin")
        if wanted is not None and plugin.name not in wanted:
            continue
        if plugin.name in found:
            raise SitePulseError(f"two installed decoders are called {plugin.name!r}")
        found[plugin.name] = plugin
    if wanted is not None and (unknown := wanted - set(found)):
        raise SitePulseError(f"SITEPULSE_LOAD_DECODERS names decoders that are not installed: {sorted(unknown)}")
    return found
