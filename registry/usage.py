"""Usage events (who used which service on which site, how), recorded without slowing the request.

``record`` only appends to a bounded in-memory queue; one background thread takes the queue
in batches (``batch_size`` events or every ``flush_interval`` seconds, whichever comes first)
and writes each batch with one COPY on its own connection. A clean shutdown (``close``)
writes everything recorded before it. When the database is unreachable the writer keeps
its batch and retries with backoff; while it waits, a full queue drops new events, counted
in ``stats()`` and logged, rather than ever blocking a request.

Actions: ``api_call`` (a service's route was called; the guard in ``registry.api.plugins``),
``card_view`` (the site view rendered a service's card; ``card_views``), ``export``
(data left the platform as a file or report; ``export``) and ``alert_ack`` (an alert
was acknowledged), ``report_delivered`` and ``report_opened`` (a scheduled report reached someone, and someone
opened its link; one per service with a section in it: registry/shift_reports). Alerts *delivered* are not
events: the runner marks them ``published_at`` in ``service_alerts``, and reports count them there.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from tenacity import RetryCallState

from sitepulse.retry import backoff_s, retrying

log = logging.getLogger(__name__)

Action = Literal["api_call", "card_view", "export", "alert_ack", "trial_view", "report_delivered", "report_opened"]
ACTIONS: tuple[str, ...] = ("api_call", "card_view", "export", "alert_ack", "trial_view", "report_delivered",
                            "report_opened")
# someone used the service: a report opened is a reader of it; a trial's results read before it is switched on
# count too (that is the adoption evidence co-creation starts from)
ADOPTION_ACTIONS: tuple[str, ...] = ("api_call", "card_view", "alert_ack", "trial_view", "report_opened")
_COPY = "COPY usage_events (at, site_id, service, principal, action, detail) FROM STDIN"
_DROP_LOG_EVERY_S = 10.0
_RETRY_MAX_S = 5.0


@dataclass(frozen=True)
class UsageEvent:
    """One use: when, on which site, of which service (None: site-wide), by whom, doing what."""

    at: datetime
    site_id: str
    service: str | None
    principal: str
    action: str
    detail: dict[str, Any] | None = None

    def row(self) -> tuple[Any, ...]:
        return (self.at, self.site_id, self.service, self.principal, self.action,
                Jsonb(self.detail) if self.detail is not None else None)


class _Marker:
    """Put in the queue behind events: set once everything before it is written (flush) or to stop."""

    def __init__(self, stop: bool = False) -> None:
        self.stop = stop
        self.done = threading.Event()


class UsageRecorder:
    """A bounded queue of usage events and the one thread that writes them in batches."""

    def __init__(self, database_url: str | None, *, enabled: bool = True, batch_size: int = 500,
                 flush_interval: float = 0.5, max_queue: int = 100_000) -> None:
        self.database_url = database_url
        self.enabled = enabled and database_url is not None
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._queue: queue.Queue[UsageEvent | _Marker] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counts = {"recorded": 0, "written": 0, "dropped": 0, "failed": 0, "batches": 0}
        self._last_drop_log = 0.0

    # --- request side --------------------------------------------------------------------------

    def record(self, site_id: str, service: str | None, principal: str, action: str,
               detail: dict[str, Any] | None = None) -> None:
        """Queue one event; never blocks (a full queue drops it, counted and logged)."""
        if not self.enabled:
            return
        event = UsageEvent(datetime.now(UTC), site_id, service, principal, action, _clean(detail))
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._dropped(1)
            return
        with self._lock:
            self._counts["recorded"] += 1

    def card_views(self, site_id: str, services: Iterable[str], principal: str) -> None:
        """One ``card_view`` per service card the site view rendered for ``principal``."""
        for service in services:
            self.record(site_id, service, principal, "card_view")

    def export(self, site_id: str, service: str | None, principal: str, what: str, fmt: str, path: str) -> None:
        """One ``export`` event: ``what`` left the platform as ``fmt`` (csv, json, ...) through ``path``."""
        self.record(site_id, service, principal, "export", {"what": what, "format": fmt, "path": path})

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (no-op when tracking is off or it already runs)."""
        if not self.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._run, name="sitepulse-usage-writer", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event recorded before this call is written; False on timeout."""
        return self._send(_Marker(), timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Write everything queued, then stop the writer; False when it could not finish in time."""
        if self._thread is None:
            return True
        finished = self._send(_Marker(stop=True), timeout)
        self._thread.join(timeout=1.0 if finished else 0)
        if not finished:
            log.error("usage writer did not finish within %.0f s; %d events not written", timeout,
                      self._queue.qsize())
        self._thread = None
        return finished

    def stats(self) -> dict[str, int]:
        """Counters since start: recorded, written, dropped (queue full), failed (refused rows), batches, queued."""
        with self._lock:
            return {**self._counts, "queued": self._queue.qsize()}

    def _send(self, marker: _Marker, timeout: float) -> bool:
        if self._thread is None or not self._thread.is_alive():
            return self._thread is None and marker.stop
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(max(0.0, deadline - time.monotonic()))

    # --- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        try:
            while True:
                batch, marker = self._take_batch()
                if batch:
                    conn = self._write(conn, batch, give_up=marker is not None and marker.stop)
                if marker is not None:
                    marker.done.set()
                    if marker.stop:
                        return
        finally:
            if conn is not None:
                conn.close()

    def _take_batch(self) -> tuple[list[UsageEvent], _Marker | None]:
        """Up to ``batch_size`` events, waiting at most ``flush_interval`` after the first; stops at a marker."""
        first = self._queue.get()
        if isinstance(first, _Marker):
            return [], first
        batch = [first]
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Marker):
                return batch, item
            batch.append(item)
        return batch, None

    def _write(self, conn: psycopg.Connection | None, batch: list[UsageEvent],
               give_up: bool) -> psycopg.Connection | None:
        """COPY one batch, reconnecting with back-off while the database is away (sitepulse/retry.py); returns the
        connection, or None when it gave up at shutdown (the batch counted as failed)."""
        held = [conn]

        def reconnect_later(state: RetryCallState) -> None:
            if held[0] is not None:
                held[0].close()
            held[0] = None
            log.warning("usage writer: database unreachable, retrying in %.1f s: %s", state.upcoming_sleep,
                        state.outcome.exception() if state.outcome else "")

        # at shutdown, stop once the back-off reached its cap: the events are then lost, and counted
        at_cap = lambda state: give_up and backoff_s(state.attempt_number, 0.2, _RETRY_MAX_S + 0.1) > _RETRY_MAX_S  # noqa: E731
        try:
            for attempt in retrying(psycopg.OperationalError, first_s=0.2, max_s=_RETRY_MAX_S + 0.1, give_up=at_cap,
                                    before_sleep=reconnect_later):
                with attempt:
                    return self._copy_once(held, batch)
        except psycopg.OperationalError as exc:
            if held[0] is not None:
                held[0].close()
            self._count(failed=len(batch))
            log.error("usage writer: database unreachable at shutdown, %d events lost: %s", len(batch), exc)
        return None

    def _copy_once(self, held: list[psycopg.Connection | None], batch: list[UsageEvent]) -> psycopg.Connection:
        """One attempt: connect if needed and COPY; one bad value keeps the rest, row by row."""
        if held[0] is None or held[0].closed:
            assert self.database_url is not None
            held[0] = psycopg.connect(self.database_url, connect_timeout=5, application_name="sitepulse-usage-writer")
        conn = held[0]
        try:
            _copy(conn, batch)
            self._count(written=len(batch), batches=1)
        except psycopg.DataError as exc:
            conn.rollback()
            written = _insert_each(conn, batch)
            self._count(written=written, failed=len(batch) - written, batches=1)
            log.warning("usage writer: %d of %d events refused by the database (%s)",
                        len(batch) - written, len(batch), exc)
        return conn

    def _count(self, **increments: int) -> None:
        with self._lock:
            for key, value in increments.items():
                self._counts[key] += value

    def _dropped(self, n: int) -> None:
        with self._lock:
            self._counts["dropped"] += n
            dropped = self._counts["dropped"]
        now = time.monotonic()
        if now - self._last_drop_log > _DROP_LOG_EVERY_S:
            self._last_drop_log = now
            log.warning("usage queue full (%d events): %d usage events dropped so far", self._queue.maxsize, dropped)


def write_events(conn: psycopg.Connection, events: Iterable[UsageEvent]) -> None:
    """Store these uses at once, in the caller's transaction (the recorder's queue is for live requests)."""
    with conn.cursor() as cur, cur.copy(_COPY) as copy:
        for event in events:
            copy.write_row(event.row())


def _copy(conn: psycopg.Connection, batch: list[UsageEvent]) -> None:
    write_events(conn, batch)
    conn.commit()


def _insert_each(conn: psycopg.Connection, batch: list[UsageEvent]) -> int:
    written = 0
    for event in batch:
        try:
            with conn.transaction():
                conn.execute("INSERT INTO usage_events (at, site_id, service, principal, action, detail)"
                             " VALUES (%s, %s, %s, %s, %s, %s)", event.row())
            written += 1
        except psycopg.DataError:
            continue
    conn.commit()
    return written


def _clean(detail: dict[str, Any] | None) -> dict[str, Any] | None:
    """PostgreSQL cannot store NUL characters in text or JSON; strip them from string values."""
    if not detail:
        return detail or None
    return {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in detail.items()}
