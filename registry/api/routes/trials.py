"""Trials on history over HTTP: start one (admin of the site), read what it found (counted as adoption)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query
from pydantic import BaseModel, ConfigDict, Field

from registry.api.deps import AdminDep, AdminSiteDep, DbDep, PrincipalDep, ServiceDep, SiteDep, StateDep
from registry.api.state import AppState
from registry.trials import create_trial, execute_trial, get_trial, list_trials, trial_rows
from sitepulse.db import connect

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/sites/{site_id}", tags=["trials"])


class TrialRequest(BaseModel):
    """The past period a service is tried on."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: datetime = Field(alias="from", description="start of the period (RFC 3339, with a time zone)")
    end: datetime = Field(alias="to", description="end of the period, exclusive")


def _run(state: AppState, trial_id: int) -> None:
    """The trial in its own connection and thread: a fortnight of history takes minutes, not a request."""
    try:
        with connect(state.database_url, autocommit=True) as conn:
            execute_trial(conn, state.services, trial_id)
    except Exception:  # kept on the trial row (status failed, with the reason) by execute_trial
        log.exception("trial %d failed", trial_id)


@router.post("/services/{name}/trials", status_code=202,
             responses={409: {"description": "a trial of this service is still running on the site"}})
def post_trial(site_id: AdminSiteDep, request: TrialRequest, conn: DbDep, state: StateDep, admin: AdminDep,
               service: ServiceDep, background: BackgroundTasks) -> dict[str, Any]:
    """Try a service on the site's recorded history (admin): runs in the background; poll the trial."""
    trial_id = create_trial(conn, state.services, site_id, service.name, request.start, request.end, admin.name)
    background.add_task(threading.Thread(target=_run, args=(state, trial_id), daemon=True,
                                         name=f"trial-{trial_id}").start)
    return get_trial(conn, site_id, trial_id)


@router.get("/trials")
def get_trials(site_id: SiteDep, conn: DbDep, state: StateDep, principal: PrincipalDep,
               service: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    """The site's trials, newest first, each with what it found and its KPIs beside the site's own."""
    items = list_trials(conn, site_id, service)
    for name in sorted({item["service"] for item in items}):
        state.usage.record(site_id, name, principal.name, "trial_view", {"trials": len(items)})
    return {"items": items}


@router.get("/trials/{trial_id}")
def get_one_trial(site_id: SiteDep, trial_id: int, conn: DbDep, state: StateDep,
                  principal: PrincipalDep) -> dict[str, Any]:
    """One trial: status, progress, what it found, the alerts it would have raised, KPIs."""
    trial = get_trial(conn, site_id, trial_id)
    state.usage.record(site_id, trial["service"], principal.name, "trial_view", {"trial": trial_id})
    return trial


@router.get("/trials/{trial_id}/rows")
def get_trial_rows(site_id: SiteDep, trial_id: int, conn: DbDep, state: StateDep,
                   table: Annotated[str, Query(max_length=128, description="schema.table, e.g. weight_loading.cycles")],
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
    """The rows a trial wrote to one of its service's tables (the cycles, encounters, queues it found)."""
    trial = get_trial(conn, site_id, trial_id)
    return {"items": trial_rows(conn, state.services, trial, table, limit, offset)}
