"""The service runner: the host that feeds each enabled service its sites' new telemetry.

The host owns everything but the logic (as a Home Assistant coordinator does): scheduling,
checkpoints, retries with backoff, health, and replay. One step for one (service, site):

1. lock the checkpoint; read telemetry committed since its watermark, bounded so a dependant
   reads only what its dependencies have already processed;
2. if a sample is older than what the service already processed for that machine, rewind
   to the newest snapshot before it, delete the outputs written since, and replay;
3. call ``process``; write its rows (tagged ``site_id``, ``run_seq``), its alerts, the new
   state and checkpoint, and a snapshot, all in ONE transaction; publish alerts after commit.

The checkpoint's bookkeeping (bound, late, rewind, advance, save) is ``Checkpoint``'s
(microservices/checkpoints.py); this module moves data and calls the service. Which runner process steps
which pair, when, and how a failing pair backs off is ``Runner``'s, with leases from microservices/pairs.py.

A crash at any point leaves the last committed step intact: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql
from pydantic import ValidationError

from ingest.fleet import births
from ingest.reader import Watermark, machines_with_telemetry, read_new_telemetry, read_telemetry_range, stored_since
from microservices import pairs
from microservices.alerts import Publisher, publish_pending, store_alerts
from microservices.checkpoints import SITE_WIDE, Checkpoint, dependency_watermark, until_series
from microservices.clock import telemetry_for
from microservices.frames import frame_reader
from microservices.host_slots import HostSlots, host_cores
from microservices.output_copy import copy_frame
from microservices.sdk import Batch, Outputs, Service
from microservices.shared_reads import SharedReads
from sitepulse import heap
from sitepulse.errors import SitePulseError
from sitepulse.sites import load_site

log = logging.getLogger(__name__)

TELEMETRY_CHANNEL = "sitepulse_telemetry"
PROGRESS_CHANNEL = "sitepulse_service_progress"
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_ROWS_PER_STEP = 200_000
TRIM_EVERY_S = 30.0
WORKER_THREADS = 2  # per runner process: one step's database waits overlap another's computing
TURN_S = 1.0  # a pair's turn: then the longest-waiting due pair goes next
HELD_BACK_RETRY_S = 0.2  # rows hidden by an open transaction are looked for again this soon
IDLE_POLL_S = 1.0  # an idle worker looks for due pairs this often (sooner when notified)
OK_EVERY_S = 5.0  # a healthy service's health row is refreshed at most this often per runner


@dataclass
class StepResult:
    rows: int = 0
    replayed: bool = False
    alerts: int = 0
    progressed: bool = False
    held_back: bool = False  # nothing read, yet rows are stored that an older open transaction hides for now


def enabled_sites(conn: psycopg.Connection, service: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT site_id FROM service_enablement WHERE service = %s AND enabled ORDER BY site_id",
            (service,),
        )
    ]


def site_settings(conn: psycopg.Connection, service: Service, site_id: str) -> Any:
    """The service's settings stored for the site (its defaults where none are), validated."""
    row = conn.execute(
        "SELECT settings FROM service_enablement WHERE service = %s AND site_id = %s", (service.name, site_id)
    ).fetchone()
    try:
        return service.Settings.model_validate(row[0] if row else {})
    except ValidationError as exc:
        raise SitePulseError(
            f"{service.name} settings for site {site_id}: {exc.errors()[0]['msg']}"
        ) from None


def site_machines(conn: psycopg.Connection, site_id: str, site_file_machines: list) -> pd.DataFrame:
    """The site's machines: the site file's list, updated by what devices said in birth messages."""
    columns = ["machine_id", "kind", "model", "rated_payload_kg"]
    declared = pd.DataFrame(
        [[m.id, m.kind.value, m.model, m.rated_payload_kg] for m in site_file_machines], columns=columns
    )
    born = pd.DataFrame(
        births(conn, site_id),
        columns=columns,
    )
    if born.empty:
        return declared
    merged = pd.concat([declared, born]).groupby("machine_id", sort=True).last().reset_index()
    return merged[columns]


def write_outputs(
    conn: psycopg.Connection, service: Service, site_id: str, run_seq: int, frames: Mapping[str, pd.DataFrame]
) -> int:
    """COPY each table's rows, tagged with the site and the step that wrote them."""
    written = 0
    for table, frame in frames.items():
        qualified = f"{service.schema}.{table}"
        if qualified not in service.tables:
            raise SitePulseError(f"{service.name} wrote table {table!r}, which it does not declare in tables")
        copy_frame(conn, service.schema, table, {"site_id": site_id, "run_seq": run_seq}, frame)
        written += len(frame)
    return written


def call_process(service: Service, batch: Batch, state: dict[str, Any], settings: Any) -> tuple[Outputs, Any]:
    """``service.process``, refusing a return that is not ``(Outputs, state)`` with a message naming the service."""
    outputs, state = service.process(batch, state, settings)
    if not isinstance(outputs, Outputs):
        raise TypeError(f"{service.name}.process must return (Outputs, state), got {type(outputs)!r}")
    return outputs, state


def delete_outputs_after(conn: psycopg.Connection, service: Service, site_id: str, run_seq: int) -> None:
    """Remove every row a service wrote for a site after step ``run_seq`` (before a replay)."""
    for qualified in service.tables:
        schema, table = qualified.split(".", 1)
        conn.execute(
            sql.SQL("DELETE FROM {}.{} WHERE site_id = %s AND run_seq > %s").format(
                sql.Identifier(schema), sql.Identifier(table)
            ),
            (site_id, run_seq),
        )


class ServiceHost:
    """Runs one service for every site it is enabled on."""

    def __init__(
        self,
        service: Service,
        publisher: Publisher | None = None,
        trace: bool = False,
        alert_channel: str | None = None,
        max_rows: int = MAX_ROWS_PER_STEP,
        reads: SharedReads | None = None,
    ) -> None:
        self.service = service
        self.publisher = publisher
        self.trace = trace
        self.max_rows = max_rows
        self.read = reads.read if reads is not None else read_new_telemetry  # shared by a runner's services
        self.channel = alert_channel or getattr(service, "alert_channel", None) or service.name

    def step(
        self, conn: psycopg.Connection, site_id: str, *, rewind_to: datetime | None = None
    ) -> StepResult:
        """Process one batch of new telemetry for one site, atomically."""
        service = self.service
        with conn.transaction():
            cp = Checkpoint.lock(conn, service.name, site_id)
            bound = dependency_watermark(conn, service.depends_on, site_id)
            if cp.waits_for(bound) and rewind_to is None:
                return StepResult()  # woken again when a dependency progresses
            new, read_to = self.read(conn, after=cp.watermark, site_id=site_id, limit=self.max_rows)
            new, mark = cp.bound(bound, new, read_to)
            late = cp.late(new, rewind_to, seen=lambda frame: telemetry_for(service, frame))
            if new.empty and not late:
                cp.skip_to(conn, mark)
                return StepResult(held_back=mark == read_to and stored_since(conn, site_id, mark))
            rows = self._rewind(conn, cp, late, new, mark, rewind_to) if late else new
            result = self._process(conn, cp, site_id, rows, replay=bool(late))
            cp.save(conn, mark, rows, replayed=bool(late))
            conn.execute("SELECT pg_notify(%s, %s)", (PROGRESS_CHANNEL, f"{service.name}:{site_id}"))
        result.progressed = True
        publish_pending(conn, self.publisher, service.name, self.channel)
        return result

    def _rewind(
        self,
        conn: psycopg.Connection,
        cp: Checkpoint,
        late: dict[str, datetime],
        new: pd.DataFrame,
        mark: Watermark,
        rewind_to: datetime | None,
    ) -> pd.DataFrame:
        """Rewind the checkpoint to the newest snapshot before the late samples, delete the outputs written
        since, and return every row to replay from it."""
        snapshot = cp.rewind(conn, late, rewind_to)
        log.info(
            "%s/%s: late samples for %d machine(s); replaying from step %d",
            cp.service,
            cp.site_id,
            len(late),
            snapshot.seq,
        )
        delete_outputs_after(conn, self.service, cp.site_id, snapshot.seq)
        stored = self._stored_since(conn, cp.site_id, snapshot, new)
        stored = stored[stored["xid"] < mark.xmin]  # later commits arrive as new rows next time
        parts = [frame for frame in (stored, new) if not frame.empty]
        rows = pd.concat(parts, ignore_index=True) if parts else new
        rows = rows.drop_duplicates(["machine_id", "ts", "seq"])
        until = until_series(rows["machine_id"], snapshot.processed_until)
        rows = rows[until.isna() | (rows["ts"] > until)]
        return rows.sort_values(["machine_id", "ts", "seq"], kind="stable").reset_index(drop=True)

    @staticmethod
    def _stored_since(
        conn: psycopg.Connection, site_id: str, snapshot: Checkpoint, new: pd.DataFrame
    ) -> pd.DataFrame:
        """Stored rows the snapshot has not seen: after its time per known machine, all of the others."""
        end = datetime.now(UTC) + timedelta(days=2)
        known = [m for m in snapshot.processed_until if m != SITE_WIDE]
        parts = []
        if known:
            start = min(snapshot.until(m) for m in known)
            parts.append(read_telemetry_range(conn, site_id, start, end, machine_ids=known))
        unseen = sorted(machines_with_telemetry(conn, site_id) - set(known))
        if unseen:
            parts.append(read_telemetry_range(conn, site_id, EARLIEST, end, machine_ids=unseen))
        return pd.concat(parts, ignore_index=True) if parts else new.iloc[0:0]

    def _process(
        self, conn: psycopg.Connection, cp: Checkpoint, site_id: str, rows: pd.DataFrame, replay: bool
    ) -> StepResult:
        service = self.service
        site = load_site(conn, site_id)
        batch = Batch(
            site_id=site_id,
            telemetry=telemetry_for(service, rows),
            site=site,
            machines=site_machines(conn, site_id, site.machines if site else []),
            read=frame_reader(conn),
            replay=replay,
        )
        settings = site_settings(conn, service, site_id)
        started = time.perf_counter()
        outputs, state = call_process(service, batch, dict(cp.state), settings)
        cp.seq += 1
        written = write_outputs(conn, service, site_id, cp.seq, outputs.frames())
        alerts = store_alerts(conn, site_id, service.name, outputs.alerts)
        cp.state = state
        cp.advance(rows, outputs.final_until)
        if self.trace:
            log.info(
                "trace %s.process(site=%s, rows=%d, replay=%s) -> %d rows, %d alerts in %.1f ms",
                service.name,
                site_id,
                len(rows),
                replay,
                written,
                alerts,
                (time.perf_counter() - started) * 1000,
            )
        return StepResult(rows=len(rows), replayed=replay, alerts=alerts)

    def catch_up(self, conn: psycopg.Connection, site_ids: list[str] | None = None) -> int:
        """Step every enabled site until none has new telemetry; returns rows processed."""
        total = 0
        for site_id in site_ids if site_ids is not None else enabled_sites(conn, self.service.name):
            while (result := self.step(conn, site_id)).progressed:
                total += result.rows
        return total

    def rewind(self, conn: psycopg.Connection, since: datetime) -> None:
        """Recompute every enabled site's results from ``since`` on (``run-services --from``)."""
        for site_id in enabled_sites(conn, self.service.name):
            self.step(conn, site_id, rewind_to=since)


def record_health(conn: psycopg.Connection, service: str, error: str | None) -> None:
    """Make the service's health visible to the API: ok, or failing with the last error."""
    if error is None:
        conn.execute(
            "INSERT INTO service_health (service, status, failures, last_success_at) "
            "VALUES (%s, 'ok', 0, now()) "
            "ON CONFLICT (service) DO UPDATE SET status = 'ok', failures = 0, last_success_at = now(), "
            "updated_at = now()",
            (service,),
        )
    else:
        conn.execute(
            "INSERT INTO service_health (service, status, failures, last_error, last_error_at) "
            "VALUES (%s, 'failing', 1, %s, now()) ON CONFLICT (service) DO UPDATE SET status = 'failing', "
            "failures = service_health.failures + 1, last_error = EXCLUDED.last_error, "
            "last_error_at = now(), updated_at = now()",
            (service, error[:2000]),
        )


def record_service_ok(conn: psycopg.Connection, service: str) -> None:
    """The service is ok once none of its sites is failing (its per-site health is ``service_pairs``)."""
    conn.execute(
        "INSERT INTO service_health AS h (service, status, failures, last_success_at) VALUES (%s, 'ok', 0, now()) "
        "ON CONFLICT (service) DO UPDATE SET status = 'ok', failures = 0, last_success_at = now(), "
        "updated_at = now() WHERE NOT EXISTS (SELECT 1 FROM service_pairs p WHERE p.service = h.service "
        "AND p.status = 'failing')",
        (service,),
    )


class Runner:
    """One runner process: worker threads that lease (service, site) pairs from PostgreSQL and step them.

    Several runner processes, on one host or many, share the pairs without a coordinator
    (microservices/pairs.py). A pair whose step raises backs off alone, with its own attempt count; the
    others keep their pace. A pair's turn ends after ``turn_s`` so one site's backlog never starves the rest.
    """

    def __init__(
        self,
        database_url: str,
        services: Mapping[str, Service],
        publisher: Publisher | None = None,
        trace: bool = False,
        max_rows: int = MAX_ROWS_PER_STEP,
        threads: int = WORKER_THREADS,
        lease_s: float = pairs.LEASE_S,
        turn_s: float = TURN_S,
        slots: int | None = None,
    ) -> None:
        self.database_url = database_url
        self.slots = HostSlots(database_url, slots or host_cores())
        self.reads = SharedReads()
        self.hosts = {name: ServiceHost(s, publisher, trace, max_rows=max_rows, reads=self.reads)
                      for name, s in services.items()}
        self.names = list(self.hosts)
        self.workers = threads
        self.lease_s = lease_s
        self.turn_s = turn_s
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.held = 0
        self.held_lock = threading.Lock()
        self.ok_written: dict[str, float] = {}
        self.threads: list[threading.Thread] = []

    def start(self, since: datetime | None = None) -> None:
        if not self.hosts:
            return
        if since is not None:
            self.rewind(since)
        self.slots.join()
        roles = [("listen", self._listen), ("renew", self._renew)]
        roles += [(f"work-{index}", functools.partial(self._work, index=index)) for index in range(self.workers)]
        for name, target in roles:
            thread = threading.Thread(target=self._guarded, args=(name, target), name=f"runner-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self, timeout: float = 30) -> None:
        """Stop within ``timeout`` in all: a step still running then is abandoned with the process (its transaction
        rolls back when the connection goes; the step runs again, so nothing is lost or counted twice)."""
        self.stop_event.set()
        self.wake.set()
        log.info("runner %s: telemetry read %d times (%d rows), %d reads shared between services", self.runner_id,
                 self.reads.reads, self.reads.rows_read, self.reads.shared)
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.slots.leave()
        try:  # hand the pairs over at once rather than when the leases expire
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                conn.execute("UPDATE service_pairs SET runner = NULL, lease_until = NULL WHERE runner = %s",
                             (self.runner_id,))
        except psycopg.OperationalError:
            pass

    def rewind(self, since: datetime) -> None:
        """Recompute every enabled pair's results from ``since`` (``run-services --from``), each under a lease."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            pairs.sync_pairs(conn, self.names)
            for name, host in self.hosts.items():
                for site_id in enabled_sites(conn, name):
                    pair = pairs.Pair(name, site_id)
                    while not pairs.claim_pair(conn, self.runner_id, pair, self.lease_s):
                        if self.stop_event.wait(1.0):
                            return
                    host.step(conn, site_id, rewind_to=since)
                    pairs.release_ok(conn, self.runner_id, pair, due_in_s=0.0)

    def _connect(self) -> psycopg.Connection:
        """A connection named after this runner: pg_stat_activity shows which runner holds what."""
        return psycopg.connect(self.database_url, autocommit=True,
                               application_name=f"sitepulse-runner {self.runner_id}"[:63])

    def _guarded(self, name: str, target: Any) -> None:
        """Run a thread's loop; a lost database connection is waited out with back-off, never fatal."""
        failures = 0
        while not self.stop_event.is_set():
            try:
                with self._connect() as conn:
                    failures = 0
                    target(conn)
            except psycopg.OperationalError as exc:
                failures += 1
                log.warning("runner %s: database unavailable (%s); retrying", name,
                            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            except Exception:  # a bug in the runner itself: log it, keep the process serving
                failures += 1
                log.exception("runner %s failed (attempt %d)", name, failures)
            self.stop_event.wait(pairs.backoff_s(failures) if failures else 0)

    def _listen(self, conn: psycopg.Connection) -> None:
        """Turn telemetry and dependency notifications into due pairs (for whichever runner claims them)."""
        conn.execute(f"LISTEN {TELEMETRY_CHANNEL}")
        conn.execute(f"LISTEN {PROGRESS_CHANNEL}")
        synced = 0.0
        while not self.stop_event.is_set():
            if time.monotonic() - synced > pairs.IDLE_RECHECK_S:
                pairs.sync_pairs(conn, self.names)
                synced = time.monotonic()
            notes = [*conn.notifies(timeout=0.5, stop_after=1)]
            if notes:  # and whatever came with it: one UPDATE for a burst
                notes += conn.notifies(timeout=0.02, stop_after=500)
            sites: set[str] = set()
            dependants: dict[str, set[str]] = {}
            any_site = False
            for note in notes:
                if note.channel == TELEMETRY_CHANNEL:
                    named = {s for s in note.payload.split(",") if s}
                    any_site = any_site or not named
                    sites |= named
                else:
                    service, _, site_id = note.payload.partition(":")
                    for name, host in self.hosts.items():
                        if service in host.service.depends_on:
                            dependants.setdefault(name, set()).add(site_id)
            if any_site or sites:
                pairs.mark_due(conn, self.names, None if any_site else sorted(sites))
            for name, site_ids in dependants.items():
                pairs.mark_due(conn, [name], sorted(site_ids))
            if any_site or sites or dependants:
                self.wake.set()

    def _renew(self, conn: psycopg.Connection) -> None:
        """Extend this runner's leases while its steps run, so a live runner keeps its pairs."""
        while not self.stop_event.wait(pairs.RENEW_EVERY_S):
            if self.held:
                pairs.renew(conn, self.runner_id, self.lease_s)

    def _work(self, conn: psycopg.Connection, index: int = 0) -> None:
        """Claim a due pair, give it a turn, release it; sleep until woken when nothing is due."""
        while not self.stop_event.is_set():
            # the first worker steps while it holds one of the host's slots, a second one while the host has fewer
            # runners than cores (microservices/host_slots.py; 40 sites, 2 runners on 2 cores: 77.8 s of CPU and
            # 44.7 s with two workers each, 69.3 s and 40.0 s with one)
            slot = None
            if index:
                if self.slots.runners() >= self.slots.count:
                    self.stop_event.wait(pairs.RENEW_EVERY_S)
                    continue
            elif (slot := self.slots.acquire(self.stop_event)) is None:
                return  # stopping
            with self.held_lock:
                self.held += 1
            try:
                pair = pairs.claim_next(conn, self.runner_id, self.names, self.lease_s)
                follow = pair
                while follow is not None and self._turn(conn, follow) and not self.stop_event.is_set():
                    follow = self._claim_dependant(conn, follow)
            finally:
                with self.held_lock:
                    self.held -= 1
                if slot is not None:
                    self.slots.release(slot)
            if pair is None:
                self.reads.expire()
                heap.trim(TRIM_EVERY_S)  # idle: give the burst's freed pages back (sitepulse/heap.py)
                self.wake.wait(IDLE_POLL_S)
                self.wake.clear()

    def _claim_dependant(self, conn: psycopg.Connection, moved: pairs.Pair) -> pairs.Pair | None:
        """A pair of the same site that depends on the service that just moved there, if it is free."""
        dependants = [name for name, host in self.hosts.items() if moved.service in host.service.depends_on]
        if not dependants:
            return None
        return pairs.claim_next(conn, self.runner_id, dependants, self.lease_s, site_id=moved.site_id)

    def _turn(self, conn: psycopg.Connection, pair: pairs.Pair) -> bool:
        """Step one pair until it is caught up or its turn is over; a failure backs off this pair alone. Returns
        whether it progressed."""
        host = self.hosts[pair.service]
        deadline = time.monotonic() + self.turn_s
        due_in_s: float | None = None  # when woken
        progressed = False
        try:
            while (result := host.step(conn, pair.site_id)).progressed:
                progressed = True
                if time.monotonic() > deadline:
                    due_in_s = 0.0  # work left: its turn is over, the longest-waiting pair goes next
                    break
            if result.held_back:
                due_in_s = HELD_BACK_RETRY_S
        except psycopg.OperationalError:
            raise  # the database, not the pair: the lease lapses and the pair is taken up again
        except Exception as exc:  # this site's step failed: record it, back off this pair alone
            error = f"{type(exc).__name__}: {exc}"
            attempt = pairs.release_failed(conn, self.runner_id, pair, error)
            record_health(conn, pair.service, f"site {pair.site_id}: {error}")
            self.ok_written.pop(pair.service, None)
            log.warning("%s failed (attempt %d, retrying in %.0f s): %s", pair, attempt,
                        pairs.backoff_s(attempt), error, exc_info=not isinstance(exc, SitePulseError))
            return False
        recovered = pairs.release_ok(conn, self.runner_id, pair, due_in_s)
        if due_in_s == 0.0:
            self.wake.set()
        now = time.monotonic()
        if recovered or now - self.ok_written.get(pair.service, -OK_EVERY_S) >= OK_EVERY_S:
            record_service_ok(conn, pair.service)
            self.ok_written[pair.service] = now
        return progressed
