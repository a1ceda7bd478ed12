"""Where each service is in each site's telemetry, and the snapshots it can rewind to.

A checkpoint is the service's state plus, per machine, the newest sample time it has
processed and the telemetry watermark it has read to. Every committed step also stores
a snapshot (state + per-machine times), so that a late sample can be handled by rewinding
to the newest snapshot that precedes it and replaying from there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from ingest.reader import Watermark
from sitepulse.errors import SitePulseError

KEEP_RECENT_SNAPSHOTS = 50  # beyond these, one snapshot an hour is kept
SNAPSHOT_HORIZON = "7 days"  # a sample later than this replays from the very start
SNAPSHOT_EVERY_STEPS = 20  # a rewind replays at most this many steps of work


SITE_WIDE = "*"  # key in processed_until: how far a site-wide service declared its results final


@dataclass
class Checkpoint:
    """A service's position in one site's telemetry, and the moves a runner step makes with it.

    One step reads: ``lock`` -> ``bound`` what was read -> ``late`` samples? ``rewind`` -> process ->
    ``advance`` past the rows -> ``save`` (or ``skip_to`` when there was nothing to process).
    """

    service: str
    site_id: str
    seq: int = 0
    watermark: Watermark | None = None
    processed_until: dict[str, str] = field(default_factory=dict)  # machine_id -> ISO ts
    state: dict = field(default_factory=dict)

    @classmethod
    def lock(cls, conn: psycopg.Connection, service: str, site_id: str) -> Checkpoint:
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
        return cls(service, site_id, seq, mark, until, state)

    def until(self, machine_id: str) -> datetime | None:
        value = self.processed_until.get(machine_id)
        return datetime.fromisoformat(value) if value else None

    def waits_for(self, bound: int | None) -> bool:
        """Every row this pair would read next lies at or beyond ``bound`` (its dependencies' watermark): reading
        them only to drop them all cost a whole backlog read per wake while a dependency caught up."""
        return bound is not None and bound <= (self.watermark.xmin if self.watermark is not None else 0)

    def bound(self, bound: int | None, frame: pd.DataFrame, mark: Watermark) -> tuple[pd.DataFrame, Watermark]:
        """Keep only rows every dependency has processed (below ``bound``, ``dependency_watermark``: a dependant
        never runs ahead), and a mark saying so."""
        if bound is None:
            return frame, mark
        beyond = frame["xid"] >= bound
        if beyond.any():
            return frame[~beyond], Watermark(bound)
        if mark.last_key is None and mark.xmin > bound:
            return frame, Watermark(bound)
        return frame, mark

    def late(self, frame: pd.DataFrame, rewind_to: datetime | None = None,
             seen: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> dict[str, datetime]:
        """Samples at or before what was already processed: per machine the oldest, plus the site-wide final
        time; ``rewind_to`` (``run-services --from``) makes every machine late from that time.

        Machines' times are the devices' own, as stored; the site-wide final time is the service's, declared
        on the telemetry as the service saw it: ``seen`` gives that view (clocks corrected, clock.py), so a
        clock running ahead cannot carry a late sample past the final time unnoticed.
        """
        late: dict[str, datetime] = {}
        if self.processed_until and not frame.empty:
            flagged = frame[frame["ts"] <= until_series(frame["machine_id"], self.processed_until)]
            late.update({m: ts.to_pydatetime() for m, ts in flagged.groupby("machine_id")["ts"].min().items()})
            final = self.until(SITE_WIDE)
            times = (seen(frame) if seen and final is not None else frame)["ts"]
            if final is not None and (times <= final).any():
                late[SITE_WIDE] = times[times <= final].min().to_pydatetime()
        if rewind_to is not None:
            late.update({m: rewind_to for m in self.processed_until} or {SITE_WIDE: rewind_to})
        return late

    def rewind(self, conn: psycopg.Connection, late: dict[str, datetime], rewind_to: datetime | None) -> Checkpoint:
        """Go back to the newest snapshot before the late samples (forgetting newer ones); returns it.

        The state and per-machine times become the snapshot's; ``seq`` keeps counting, so the replayed
        steps' outputs never share a ``run_seq`` with the deleted ones.
        """
        if rewind_to is not None:
            earliest = {m: rewind_to for m in {*self.processed_until, *late}}
            snapshot = snapshot_before(conn, self, earliest) if earliest else Checkpoint(self.service, self.site_id)
        else:
            snapshot = snapshot_before(conn, self, late)
        forget_after(conn, self, snapshot.seq)
        self.state, self.processed_until = snapshot.state, dict(snapshot.processed_until)
        return snapshot

    def advance(self, rows: pd.DataFrame, final_until: datetime | None) -> None:
        """Move each machine's processed time to its newest row, and the site-wide final time forward."""
        if final_until is not None:
            final = self.until(SITE_WIDE)
            if final is None or final_until > final:
                self.processed_until[SITE_WIDE] = pd.Timestamp(final_until).isoformat()
        if not rows.empty:
            newest = rows.groupby("machine_id")["ts"].max()
            for machine, ts in newest.items():
                previous = self.until(machine)
                if previous is None or ts.to_pydatetime() > previous:
                    self.processed_until[machine] = ts.isoformat()

    def skip_to(self, conn: psycopg.Connection, mark: Watermark) -> None:
        """Nothing to process: just move the watermark past the empty range read."""
        if mark != self.watermark:
            conn.execute(
                "UPDATE service_checkpoints SET watermark = %s WHERE service = %s AND site_id = %s",
                (mark.to_json(), self.service, self.site_id),
            )
            self.watermark = mark

    def save(self, conn: psycopg.Connection, mark: Watermark, rows: pd.DataFrame, replayed: bool) -> None:
        """Store the new position read to ``mark`` after processing ``rows``; snapshot every few steps and
        after a replay."""
        self.watermark = mark
        data_until = rows["ts"].max().to_pydatetime() if not rows.empty else None
        save_checkpoint(conn, self, len(rows), replayed, data_until)


def until_series(machines: pd.Series, processed_until: Mapping[str, str]) -> pd.Series:
    """Per row, the newest ts already processed for its machine (NaT where none)."""
    return pd.to_datetime(machines.map(processed_until), utc=True, format="ISO8601")


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
