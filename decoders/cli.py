"""``sitepulse decoders``: list the installed decoders, and try a decoders file on a payload before deploying it."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from decoders.config import load_entries
from decoders.discovery import discover_decoders
from decoders.feeds import FeedHost, load_feeds
from decoders.front import build_front
from ingest.contract import Decoded, Decoder
from ingest.fields import MEASURED_FIELDS
from sitepulse.errors import ConfigError
from sitepulse.logs import setup_logging
from sitepulse.runtime import open_runtime
from sitepulse.settings import get_settings

decoders_app = typer.Typer(no_args_is_help=True, help="Decoders: what devices and OEM feeds send, as samples.")
out = Console()


@decoders_app.command("list")
def decoders_list() -> None:
    """The installed decoders (entry-point group sitepulse.decoders)."""
    table = Table(title="SitePulse decoders")
    for column in ("name", "version", "transport", "summary"):
        table.add_column(column)
    for plugin in discover_decoders(get_settings().load_decoders).values():
        table.add_row(plugin.name, plugin.version, plugin.transport, plugin.summary)
    out.print(table)


@decoders_app.command("feeds")
def decoders_feeds() -> None:
    """Pull the decoders file's HTTP feeds ([[feed]]) into the database until SIGTERM/Ctrl-C."""
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    feeds = load_feeds(settings)
    if not feeds:
        raise ConfigError("SITEPULSE_DECODERS_FILE", f"{settings.decoders_file} has no feed tables to pull")
    with open_runtime(settings, broker=False) as runtime:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        for route, feed in feeds:
            Console(stderr=True).print(f"[green]started[/] feed {feed.key} ({route.decoder}, site {route.site_id},"
                                       f" every {feed.interval_s:g} s)", highlight=False)
        FeedHost(runtime.database_url, feeds).run(stop)


def _payload_bytes(text: str) -> bytes:
    path = Path(text)
    if text == "-":
        return typer.get_binary_stream("stdin").read()
    if path.is_file():
        return path.read_bytes()
    return text.encode()


@decoders_app.command("test")
def decoders_test(
    config: Annotated[Path, typer.Option("--config", help="decoders file (TOML, [[route]] tables)")],
    payload: Annotated[list[str], typer.Option("--payload", help="payload file, '-' for stdin, or the text itself;"
                                               " repeat to send several messages in order")],
    topic: Annotated[list[str], typer.Option("--topic", help="topic of each payload (one for all, or one each);"
                                             " default: the route's only topic filter")] = [],  # noqa: B006
) -> None:
    """Decode payloads with a decoders file: print each normalised sample, or the reason it is rejected."""
    plugins = discover_decoders(get_settings().load_decoders)
    routes = [r for r in load_entries(config, plugins) if r.topics]
    if not routes:
        raise ConfigError("--config", f"{config} has no route tables to test")
    topics = topic or _default_topic(routes)
    if len(topics) not in (1, len(payload)):
        raise ConfigError("--topic", "give one topic, or one per --payload")
    sent: list[str] = []
    front = build_front(Decoder(), routes, plugins, publish=lambda t, p: sent.append(t) or True)
    now = datetime.now(UTC)
    for index, text in enumerate(payload):
        batch = Decoded()
        message_topic = topics[index if len(topics) > 1 else 0]
        front.decode_into(batch, message_topic, _payload_bytes(text), now)
        _show(batch, front.decoder_of(message_topic), sent)
        sent.clear()


def _default_topic(routes: list) -> list[str]:
    filters = [t for r in routes for t in r.topics]
    if len(filters) == 1 and "+" not in filters[0] and "#" not in filters[0]:
        return filters
    raise ConfigError("--topic", "the routes' filters have wildcards or are several: give the message's --topic")


def _show(batch: Decoded, decoder: str, sent: list[str]) -> None:
    for row in batch.rows:
        sample = {k: v for k, v in zip(("site_id", "machine_id", "ts", "seq"), row[:4], strict=True)}
        sample.update({k: v for k, v in zip(MEASURED_FIELDS, row[5:13], strict=True) if v is not None})
        if row[13]:
            sample["extra"] = orjson.loads(row[13])
        sample["ts"] = sample["ts"].isoformat()
        out.print(f"[green]sample[/] ({decoder}) " + orjson.dumps(sample).decode(), highlight=False, soft_wrap=True)
    for status in batch.statuses:
        out.print(f"[cyan]status[/] ({decoder}) {status.site_id}/{status.machine_id} {status.status}", highlight=False)
    for reject in batch.rejects:
        out.print(f"[red]rejected[/] ({decoder}) {reject.reason}", highlight=False, soft_wrap=True)
    for topic in sent:
        out.print(f"[yellow]would publish[/] ({decoder}) a command on {topic}", highlight=False)
    if not (batch.rows or batch.statuses or batch.rejects):
        out.print(f"[dim]nothing[/] ({decoder}): the message carries no mapped value", highlight=False)
