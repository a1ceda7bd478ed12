"""Loading plugins from an entry-point group: limited by name BEFORE importing, a broken one skipped in one line.

Services and decoders are both plugins (``sitepulse.microservices``, ``sitepulse.decoders``). A list such as
``SITEPULSE_LOAD_SERVICES`` names entry points, so a plugin that is not wanted is never imported; one that is
wanted but fails to import is reported in one line and skipped, and the others load. Naming a broken plugin
explicitly is an error (one line), since the caller asked for exactly it.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from sitepulse.errors import SitePulseError

log = logging.getLogger(__name__)


def wanted_names(load: str | None) -> set[str] | None:
    """``"a, b"`` -> ``{"a", "b"}``; None or blank: every plugin."""
    names = {n.strip() for n in load.split(",") if n.strip()} if load else set()
    return names or None


def load_plugins(group: str, load: str | None, setting: str) -> dict[str, Any]:
    """Entry-point name -> loaded object, for the entries ``load`` names (all when None)."""
    wanted = wanted_names(load)
    found: dict[str, Any] = {}
    broken: dict[str, str] = {}
    for entry in entry_points(group=group):
        if wanted is not None and entry.name not in wanted:
            continue  # never imported
        try:
            found[entry.name] = entry.load()
        except Exception as exc:  # a broken plugin costs itself, not the others
            broken[entry.name] = _describe(entry, exc)
            log.warning("%s plugin %r skipped: %s", group, entry.name, broken[entry.name])
    if wanted is not None:
        if failed := sorted(wanted & set(broken)):
            raise SitePulseError(f"{setting} names {failed[0]!r}, which fails to load: {broken[failed[0]]}")
        if unknown := wanted - set(found):
            raise SitePulseError(f"{setting} names {_kind(group)} that are not installed: {sorted(unknown)}")
    return found


def _describe(entry: EntryPoint, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{entry.value} does not import ({type(exc).__name__}: {first})" if first else \
        f"{entry.value} does not import ({type(exc).__name__})"


def _kind(group: str) -> str:
    return {"sitepulse.microservices": "services", "sitepulse.decoders": "decoders"}.get(group, "plugins")
