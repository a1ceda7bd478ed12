"""The co-creation lifecycle of a service on a site, so every stage change is legal, explained and audited.

Stages, in the order provider and customer walk them::

    proposed -> prioritized -> developing -> trial -> pilot -> live -> retired

| from | allowed next | why |
|---|---|---|
| (none) | proposed, trial, pilot | a new need starts as a proposal; an existing service may go straight to a trial on
  the site's history or to pilot |
| proposed | prioritized, trial, retired | a trial on history shows what it would have found before it is built on |
| prioritized | developing, trial, retired | |
| developing | trial, pilot, retired | |
| trial | pilot, developing, retired | run on recorded history only (registry/trials.py): switched on, it pilots |
| pilot | live, developing, retired | developing again = iterate after a pilot |
| live | pilot, retired | pilot again = iterate on a live service |
| retired | proposed | revived: it starts over as a proposal |

Enabling is separate from the stage but bounded by it: a service runs on a site only at
``pilot`` or ``live``. Switching on a service that has no stage on the site, or is on trial, puts it into
``pilot``; moving a switched-on service to any other stage switches it off (subject to the
dependency rules). Every change is stored with who made it, when and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from sitepulse.errors import Conflict

Stage = Literal["proposed", "prioritized", "developing", "trial", "pilot", "live", "retired"]
STAGES: tuple[str, ...] = ("proposed", "prioritized", "developing", "trial", "pilot", "live", "retired")
RUNNING_STAGES = frozenset({"pilot", "live"})
NEXT_STAGES: dict[str | None, tuple[str, ...]] = {
    None: ("proposed", "trial", "pilot"),
    "proposed": ("prioritized", "trial", "retired"),
    "prioritized": ("developing", "trial", "retired"),
    "developing": ("trial", "pilot", "retired"),
    "trial": ("pilot", "developing", "retired"),
    "pilot": ("live", "developing", "retired"),
    "live": ("pilot", "retired"),
    "retired": ("proposed",),
}
AUTO_PILOT_REASON = "switched on without a stage on this site: piloting it"
AFTER_TRIAL_REASON = "switched on after its trial on history: piloting it"


class IllegalTransition(Conflict):
    """A stage change the lifecycle does not allow; the message names both stages and the options."""


@dataclass(frozen=True)
class StageChange:
    """One audited stage change."""

    id: int
    site_id: str
    service: str
    from_stage: str | None
    to_stage: str
    changed_by: str
    reason: str
    changed_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COLUMNS = "id, site_id, service, from_stage, to_stage, changed_by, reason, changed_at"


def check_transition(service: str, site_id: str, from_stage: str | None, to_stage: str) -> None:
    """Raise IllegalTransition unless ``from_stage -> to_stage`` is in the lifecycle."""
    if to_stage not in STAGES:
        raise IllegalTransition(f"{to_stage!r} is not a stage; stages are {', '.join(STAGES)}")
    allowed = NEXT_STAGES[from_stage]
    if to_stage not in allowed:
        where = f"{service!r} on site {site_id!r}"
        start = f"from stage {from_stage!r}" if from_stage else "from no stage (it is new on this site)"
        raise IllegalTransition(f"cannot move {where} {start} to {to_stage!r}; allowed next: "
                                f"{', '.join(allowed)}")


def record_stage_change(conn: psycopg.Connection, site_id: str, service: str, from_stage: str | None,
                        to_stage: str, changed_by: str, reason: str) -> StageChange:
    """Append one change to the audit trail (call inside the transaction that makes the change)."""
    row = conn.execute(
        "INSERT INTO service_stage_changes (site_id, service, from_stage, to_stage, changed_by, reason)"
        f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (site_id, service, from_stage, to_stage, changed_by, reason),
    ).fetchone()
    assert row is not None
    return StageChange(*row)


def stage_history(conn: psycopg.Connection, site_id: str, service: str | None = None,
                  after: tuple[datetime, int] | None = None, limit: int = 100) -> list[StageChange]:
    """A site's stage changes, oldest first (one service's when named), after a keyset cursor."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM service_stage_changes WHERE site_id = %(site)s"
        " AND (%(service)s::text IS NULL OR service = %(service)s)"
        " AND (%(at)s::timestamptz IS NULL OR (changed_at, id) > (%(at)s, %(id)s))"
        " ORDER BY changed_at, id LIMIT %(limit)s",
        {"site": site_id, "service": service, "at": after[0] if after else None,
         "id": after[1] if after else None, "limit": limit},
    ).fetchall()
    return [StageChange(*row) for row in rows]


def lifecycle_rules() -> list[str]:
    """The transition table as sentences, for error pages, the API and the CLI."""
    return [f"{start or '(none)'} -> {', '.join(nxt)}" for start, nxt in NEXT_STAGES.items()]
