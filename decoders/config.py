"""The decoders file: which decoder reads which MQTT topics (``[[route]]``) or HTTP feeds (``[[feed]]``), per site.

TOML, named by ``SITEPULSE_DECODERS_FILE``::

    [[route]]
    decoder = "sparkplug-b"          # an installed decoder (sitepulse decoders list)
    site = "north-quarry"            # the site its samples belong to
    topics = ["spBv1.0/north/#"]     # MQTT filters ingest subscribes to for it
    [route.options]                  # the decoder's own options (its README and sample.toml)

    [[feed]]
    decoder = "iso15143-3"
    site = "north-quarry"
    [feed.options]
    url = "https://oem.example/aemp/Fleet/1"

A mistake is one line naming the file, the entry and the option.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from decoders.sdk import DecoderPlugin, Route, bad_id
from sitepulse.errors import ConfigError

SETTING = "SITEPULSE_DECODERS_FILE"
NATIVE_PREFIX = "sites/"


def _problem(path: Path, where: str, message: str) -> ConfigError:
    return ConfigError(SETTING, f"{path}: {where}: {message}")


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"options.{loc}: {first['msg']}" if loc else first["msg"]


def parse_entries(data: dict[str, Any], path: Path, plugins: dict[str, DecoderPlugin]) -> list[Route]:
    """The routes and feeds of a parsed decoders file, options validated by each decoder's model."""
    unknown_tables = set(data) - {"route", "feed"}
    if unknown_tables:
        raise _problem(path, "top level", f"unknown table(s) {sorted(unknown_tables)}; use 'route' and 'feed' tables")
    routes: list[Route] = []
    for table, transport in (("route", "mqtt"), ("feed", "http")):
        entries = data.get(table, [])
        if not isinstance(entries, list):
            raise _problem(path, table, f"write {table!r} as an array of tables (double brackets)")
        for index, entry in enumerate(entries):
            where = f"{table} {index + 1}"
            if not isinstance(entry, dict):
                raise _problem(path, where, "is not a table")
            extra = set(entry) - {"decoder", "site", "topics", "options"}
            if extra:
                raise _problem(path, where, f"unknown key(s) {sorted(extra)}")
            name = entry.get("decoder")
            plugin = plugins.get(name) if isinstance(name, str) else None
            if plugin is None:
                raise _problem(path, where, f"decoder {name!r} is not installed or not loaded ({sorted(plugins)})")
            where = f"{where} ({name})"
            if plugin.transport != transport:
                raise _problem(path, where, f"is a {plugin.transport} decoder; list it as a "
                               f"{'route' if plugin.transport == 'mqtt' else 'feed'} table")
            site = entry.get("site")
            if not isinstance(site, str) or (why := bad_id(site)):
                raise _problem(path, where, f"site {why if isinstance(site, str) else 'is missing'}")
            topics = entry.get("topics", [])
            if transport == "mqtt":
                if not topics or not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
                    raise _problem(path, where, "topics must be a non-empty list of MQTT topic filters")
                for topic in topics:
                    if topic.startswith(NATIVE_PREFIX) or topic in ("#", "+/#"):
                        raise _problem(path, where, f"topic {topic!r} overlaps the native sites/... topics")
            elif topics:
                raise _problem(path, where, "a feed has no topics")
            try:
                options = plugin.Options.model_validate(entry.get("options", {}))
            except ValidationError as exc:
                raise _problem(path, where, _validation_message(exc)) from None
            routes.append(Route(name, site, tuple(topics), options, f"{name}#{index + 1}"))
    return routes


def load_entries(path: Path | str, plugins: dict[str, DecoderPlugin]) -> list[Route]:
    """Read and check a decoders file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(SETTING, f"no such file: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(SETTING, f"{path} is not valid TOML: {exc}") from None
    return parse_entries(data, path, plugins)
