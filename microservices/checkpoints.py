"""Where each service is in each site's telemetry, and the snapshots it can rewind to.

A checkpoint is the service's state plus, per machine, the newest sample time it has
processed and the telemetry watermark it has read to. Every committed step also stores
a snapshot (state + per-machine times), so that a late sample can be handled by rewinding
to the newest snapshot that precedes it and replaying from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import psycopg
from psycopg.types.json import Jsonb

from ingest.reader import Watermark
from sitepulse.errors import SitePulseError

KEEP_RECENT_SNAPSHOTS = 50  # beyond these, one snapshot an hour is kept
SNAPSHOT_HORIZON = "7 days"  # a sample later than this replays from the very start
SNAPSHOT_EVERY_STEPS = 20  # a rewind replays at most this many steps of work


@dataclass
class Checkpoint:
    """A service's position in one site's telemetry."""

    service: str
    site_id: str
    seq: int = 0
    watermark: Watermark | None = None
    processed_until: dict[str, str] = field(default_factory=dict)  # machine_id -> ISO ts
    state: dict = field(default_factory=dict)

    def until(self, machine_id: str) -> datetime | None:
        value = self.processed_until.get(machine_id)
        return datetime.fromisoformat(value) if value else None


def lock_checkpoint(conn: psycopg.Connection, service: str, site_id: str) -> Checkpoint:
    """Read (creating if needed) and lock the checkpoint for this transaction."""
    conn.execute(
        "INSERT INTO service_checkpoints (service, site_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (service, site_id),
    )
    seq, watermark, until, state = conn.execute(
        "SELECT seq, watermark, processed_until, state FROM service_checkpoints "
        "WHERE service = %s AND site_id = %s FOR UPDATE",
        (service, site_id),
    ).fetchone()
    mark = Watermark.from_json(watermark) if watermark else None
    return Checkpoint(service, site_id, seq, mark, until, state)


_STRICT_JSON = partial(json.dumps, allow_nan=False)


def _state_json(cp: Checkpoint) -> Jsonb:
    """The state as JSON, refused with a sentence a service author can act on if it is not JSON."""
    try:
        text = _STRICT_JSON(cp.state)  # once, for the checkpoint and the snapshot alike
    except ValueError as exc:  # NaN or +-Infinity: JSON has neither, PostgreSQL's jsonb refuses them
        raise SitePulseError(
            f"{cp.service}: its state for site {cp.site_id} holds NaN or Infinity ({exc}); JSON cannot store "
            "them: keep None (or a finite sentinel) in the state instead"
        ) from None
    except TypeError as exc:
        raise SitePulseError(f"{cp.service}: its state for site {cp.site_id} is not JSON: {exc}") from None
    return Jsonb(text, dumps=_as_is)


def _as_is(text: str) -> str:
    return text


def save_checkpoint(
    conn: psycopg.Connection, cp: Checkpoint, rows: int, replayed: bool, data_until: datetime | None
) -> None:
    """Store the new position; snapshot it every few steps and after a replay."""
    state = _state_json(cp)
    conn.execute(
        "UPDATE service_checkpoints SET seq = %s, watermark = %s, processed_until = %s, state = %s, "
        "rows_processed = rows_processed + %s, replays = replays + %s, "
        "data_until = GREATEST(data_until, %s), updated_at = now() WHERE service = %s AND site_id = %s",
        (
            cp.seq,
            cp.watermark.to_json() if cp.watermark else None,
            Jsonb(cp.processed_until),
            state,
            rows,
            int(replayed),
            data_until,
            cp.service,
            cp.site_id,
        ),
    )
    taken = conn.execute(
        "INSERT INTO service_snapshots (service, site_id, seq, processed_until, state) "
        "SELECT %(service)s, %(site)s, %(seq)s, %(until)s, %(state)s WHERE %(force)s OR NOT EXISTS ("
        " SELECT 1 FROM service_snapshots WHERE service = %(service)s AND site_id = %(site)s"
        " AND seq > %(seq)s - %(every)s) RETURNING seq",
        {"service": cp.service, "site": cp.site_id, "seq": cp.seq, "until": Jsonb(cp.processed_until),
         "state": state, "force": replayed, "every": SNAPSHOT_EVERY_STEPS},
    ).fetchone()
    if taken:
        _prune_snapshots(conn, cp)


def _prune_snapshots(conn: psycopg.Connection, cp: Checkpoint) -> None:
    """Keep the newest snapshots, one an hour before them, none past the horizon."""
    conn.execute(
        "DELETE FROM service_snapshots s WHERE service = %(service)s AND site_id = %(site)s AND ("
        " created_at < now() - %(horizon)s::interval OR (seq < (SELECT min(seq) FROM ("
        "  SELECT seq FROM service_snapshots WHERE service = %(service)s AND site_id = %(site)s"
        "  ORDER BY seq DESC LIMIT %(recent)s) newest)"
        " AND EXISTS (SELECT 1 FROM service_snapshots o WHERE o.service = s.service"
        "  AND o.site_id = s.site_id AND o.seq > s.seq"
        "  AND date_trunc('hour', o.created_at) = date_trunc('hour', s.created_at))))",
        {"service": cp.service, "site": cp.site_id, "horizon": SNAPSHOT_HORIZON, "recent": KEEP_RECENT_SNAPSHOTS},
    )


def snapshot_before(conn: psycopg.Connection, cp: Checkpoint, earliest: dict[str, datetime]) -> Checkpoint:
    """The newest snapshot that has not yet seen any of ``earliest`` (machine -> oldest late ts).

    Falls back to the empty start (seq 0) when every kept snapshot is too new.
    """
    rows = conn.execute(
        "SELECT seq, processed_until, state FROM service_snapshots "
        "WHERE service = %s AND site_id = %s AND seq <= %s ORDER BY seq DESC",
        (cp.service, cp.site_id, cp.seq),
    )
    for seq, until, state in rows:
        candidate = Checkpoint(cp.service, cp.site_id, seq, cp.watermark, until, state)
        if all((t := candidate.until(m)) is None or t < ts for m, ts in earliest.items()):
            return candidate
    return Checkpoint(cp.service, cp.site_id, 0, cp.watermark, {}, {})


def forget_after(conn: psycopg.Connection, cp: Checkpoint, seq: int) -> None:
    """Drop snapshots newer than ``seq``: they describe a history being replayed."""
    conn.execute(
        "DELETE FROM service_snapshots WHERE service = %s AND site_id = %s AND seq > %s",
        (cp.service, cp.site_id, seq),
    )


def dependency_watermark(conn: psycopg.Connection, dependencies: tuple[str, ...], site_id: str) -> int | None:
    """The xid below which every dependency has processed this site's telemetry (0 if one has not started).

    A dependant reads only below it, so it never runs ahead of what it depends on.
    """
    if not dependencies:
        return None
    marks = dict(
        conn.execute(
            "SELECT service, watermark FROM service_checkpoints WHERE site_id = %s AND service = ANY(%s)",
            (site_id, list(dependencies)),
        ).fetchall()
    )
    return min(Watermark.from_json(marks[d]).xmin if marks.get(d) else 0 for d in dependencies)
