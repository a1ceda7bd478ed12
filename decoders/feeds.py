"""The host of HTTP feeds (``[[feed]]`` in the decoders file): polls each on its interval, commits, checkpoints.

A feed plugin only fetches and decodes: ``poll(out, cursor) -> new cursor``. The host writes the batch with
ingest's writer (one transaction: rows, rejects, statuses) and only then saves the new cursor, so a crash
or restart repeats at most the last poll, whose rows the database stores once (unique site, machine, ts,
seq) and whose rejects once (digest); nothing is skipped. An unreachable feed (``FeedUnavailable``) stores
nothing and is retried with backoff; its last error is kept beside the checkpoint.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

from decoders.config import load_entries
from decoders.discovery import discover_decoders
from decoders.sdk import DecoderContext, Route
from ingest.contract import Decoded
from ingest.metrics import IngestCounters, save_counters
from ingest.writer import DatabaseUnavailable, TelemetryWriter
from sitepulse.errors import ConfigError
from sitepulse.retry import backoff_s
from sitepulse.settings import Settings

log = logging.getLogger(__name__)

RETRY_MIN_S = 5.0
CURSOR_SQL = "SELECT cursor FROM decoder_feed_checkpoints WHERE feed = %s"
SAVE_SQL = (  # a failed poll (cursor NULL) keeps the cursor it had
    "INSERT INTO decoder_feed_checkpoints (feed, site_id, decoder, cursor, polls, last_error, updated_at)"
    " VALUES (%(feed)s, %(site)s, %(decoder)s, coalesce(%(cursor)s::jsonb, '{}'), 1, %(error)s, now())"
    " ON CONFLICT (feed) DO UPDATE SET cursor = coalesce(%(cursor)s::jsonb, decoder_feed_checkpoints.cursor),"
    " polls = decoder_feed_checkpoints.polls + 1, last_error = EXCLUDED.last_error, updated_at = now()"
)


class FeedUnavailable(Exception):
    """The feed could not be read this time (network, HTTP status, credentials); retried later."""


class Feed(Protocol):
    """What a feed plugin's ``create`` returns."""

    key: str  # stable identity for the checkpoint
    interval_s: float

    def poll(self, out: Decoded, cursor: dict[str, Any]) -> dict[str, Any]: ...


class FeedHost:
    """Polls feeds into the database through ingest's writer."""

    def __init__(self, database_url: str, feeds: list[tuple[Route, Feed]]) -> None:
        self.writer = TelemetryWriter(database_url)
        self.feeds = feeds
        self.counters = IngestCounters()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:feeds"
        self._due = {route.name: 0.0 for route, _ in feeds}
        self._failures = {route.name: 0 for route, _ in feeds}

    def poll(self, route: Route, feed: Feed) -> bool:
        """One poll of one feed: fetch, write, then checkpoint. False if the feed was unavailable."""
        conn = self.writer.conn if self.writer.conn is not None and not self.writer.conn.closed else self.writer.open()
        row = conn.execute(CURSOR_SQL, (feed.key,)).fetchone()
        cursor = row[0] if row else {}
        batch = Decoded()
        try:
            new_cursor = feed.poll(batch, cursor)
        except FeedUnavailable as exc:
            self._save(conn, route, feed, None, str(exc))
            log.warning("feed %s (%s): %s", feed.key, route.decoder, exc)
            return False
        result = self.writer.write(batch)
        self._save(self.writer.conn, route, feed, new_cursor, None)
        c = self.counters
        c.received_messages += 1
        c.received_samples += result.rows + sum(1 for r in batch.rejects if r.reason.startswith("sample "))
        c.stored_rows += result.stored
        c.duplicate_rows += result.duplicates
        c.rejected += result.rejected
        c.batches += 1
        c.decoder_messages[route.decoder] = c.decoder_messages.get(route.decoder, 0) + 1
        codes = c.decoder_rejects.setdefault(route.decoder, {}) if batch.rejects else {}
        for reject in batch.rejects:
            codes[reject.code or "contract"] = codes.get(reject.code or "contract", 0) + 1
        save_counters(self.writer.conn, self.worker_id, c)
        return True

    def _save(self, conn: psycopg.Connection, route: Route, feed: Feed, cursor: dict | None, error: str | None) -> None:
        conn.execute(SAVE_SQL, {"feed": feed.key, "site": route.site_id, "decoder": route.decoder,
                                "cursor": None if cursor is None else Jsonb(cursor), "error": error})

    def run(self, stop: Any) -> None:
        """Poll every feed when due until ``stop`` is set; an unavailable feed backs off up to its interval."""
        try:
            while not stop.is_set():
                now = time.monotonic()
                for route, feed in self.feeds:
                    if stop.is_set() or now < self._due[route.name]:
                        continue
                    try:
                        ok = self.poll(route, feed)
                    except DatabaseUnavailable as exc:
                        log.warning("database unavailable (%s); feed %s retried", exc, feed.key)
                        self.writer.close()
                        ok = False
                    failures = 0 if ok else self._failures[route.name] + 1
                    self._failures[route.name] = failures
                    wait = feed.interval_s if ok else backoff_s(failures + 1, RETRY_MIN_S,
                                                                min(feed.interval_s, RETRY_MIN_S * 64))
                    self._due[route.name] = time.monotonic() + wait
                stop.wait(max(0.05, min(self._due.values(), default=1.0) - time.monotonic()))
        finally:
            self.writer.close()


def load_feeds(settings: Settings) -> list[tuple[Route, Feed]]:
    """The ``[[feed]]`` entries of the decoders file, created."""
    if settings.decoders_file is None:
        raise ConfigError("SITEPULSE_DECODERS_FILE", "is not set: no feeds to pull")
    plugins = discover_decoders(settings.load_decoders)
    context = DecoderContext()
    return [(route, plugins[route.decoder].create(route, context))
            for route in load_entries(settings.decoders_file, plugins) if not route.topics]
