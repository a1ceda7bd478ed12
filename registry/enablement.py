"""Per-site enablement of services, keeping ``depends_on`` true both ways and the lifecycle legal.

A service can be switched on only when everything it depends on is on for that site, and
switched off only when nothing switched on depends on it. Changes to one site are
serialised with an advisory lock, so two concurrent requests cannot break that rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ValidationError

from microservices.sdk import Service
from registry.lifecycle import (
    AFTER_TRIAL_REASON,
    AUTO_PILOT_REASON,
    NEXT_STAGES,
    RUNNING_STAGES,
    check_transition,
    record_stage_change,
)
from sitepulse.errors import Conflict, InvalidInput


class EnablementConflict(Conflict):
    """The change would leave a service on without a dependency it needs."""


class InvalidSettings(InvalidInput):
    """Settings do not fit the service's Settings model; the message names the field."""


@dataclass(frozen=True)
class Enablement:
    """One service's switch on one site (a service never switched on reads as off, no settings)."""

    site_id: str
    service: str
    enabled: bool = False
    stage: str | None = None
    settings: dict[str, Any] | None = None
    enabled_at: datetime | None = None
    updated_at: datetime | None = None
    enabled_by: str | None = None

    def as_dict(self, service: Service) -> dict[str, Any]:
        """For the API: the effective settings (stored values over the model's defaults).

        Stored settings that no longer fit the service's model are shown as stored, with the reason.
        """
        shown: dict[str, Any] = {
            "site_id": self.site_id, "service": self.service, "version": service.version,
            "enabled": self.enabled, "stage": self.stage, "settings": self.settings or {},
            "enabled_at": self.enabled_at, "enabled_by": self.enabled_by, "updated_at": self.updated_at,
        }
        try:
            shown["settings"] = effective_settings(service, self.settings or {}).model_dump(mode="json")
        except InvalidSettings as exc:
            shown["settings_error"] = str(exc)
        return shown


_COLUMNS = "site_id, service, enabled, stage, settings, enabled_at, updated_at, enabled_by"


def validate_settings(service: Service, values: dict[str, Any]) -> BaseModel:
    """The service's Settings model for these values, or InvalidSettings naming the first bad field."""
    try:
        return service.Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise InvalidSettings(f"settings of {service.name!r}: {where}: {first['msg']}") from None


def effective_settings(service: Service, stored: dict[str, Any]) -> BaseModel:
    """Stored settings over the defaults; stored values that no longer fit are reported the same way."""
    return validate_settings(service, stored)


def site_enablements(conn: psycopg.Connection, site_id: str) -> dict[str, Enablement]:
    """Every recorded switch of one site, by service name."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM service_enablement WHERE site_id = %s", (site_id,))
    return {row[1]: Enablement(*row) for row in rows}


def enablements_for_sites(conn: psycopg.Connection, sites: list[str] | None) -> list[Enablement]:
    """Switches of the given sites (None: every site)."""
    if sites is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM service_enablement ORDER BY site_id, service")
    else:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM service_enablement WHERE site_id = ANY(%s)"
                            " ORDER BY site_id, service", (sites,))
    return [Enablement(*row) for row in rows]


def set_enabled_at(conn: psycopg.Connection, site_id: str, at: datetime, services: list[str] | None = None) -> None:
    """Date when the site's enabled services (these, None: all) were switched on: a history loaded afterwards (the
    demo's) says when they really were, for the evaluation's before/after."""
    conn.execute("UPDATE service_enablement SET enabled_at = %s WHERE site_id = %s AND enabled"
                 " AND (%s::text[] IS NULL OR service = ANY(%s))", (at, site_id, services, services))


def set_enablement(
    conn: psycopg.Connection, services: dict[str, Service], site_id: str, name: str, *,
    enabled: bool | None, stage: str | None = None, settings: dict[str, Any] | None = None,
    changed_by: str = "system", reason: str | None = None,
) -> Enablement:
    """Switch ``name`` on or off for a site and/or move its lifecycle stage, keeping every rule.

    ``enabled``/``stage``/``settings`` of None keep the stored values. Stage changes follow
    ``registry.lifecycle`` and are audited with ``changed_by`` and ``reason``; a service runs
    only at pilot or live, so switching on a service without a stage pilots it, and moving a
    running service to another stage switches it off.
    """
    service = services[name]
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sitepulse.enablement'), hashtext(%s))",
                     (site_id,))
        current = site_enablements(conn, site_id)
        previous = current.get(name)
        was_on = previous.enabled if previous else False
        old_stage = previous.stage if previous else None
        new_stage = old_stage if stage is None else stage
        if new_stage != old_stage:
            check_transition(name, site_id, old_stage, new_stage)
        if enabled and new_stage is None:
            new_stage, reason = "pilot", reason or AUTO_PILOT_REASON
        elif enabled and stage is None and new_stage == "trial":  # switched on after its trial on history
            new_stage, reason = "pilot", reason or AFTER_TRIAL_REASON
        turn_on = was_on if enabled is None else enabled
        if turn_on and new_stage not in RUNNING_STAGES:
            if enabled is None:  # a stage change away from pilot/live switches the service off
                turn_on = False
            else:
                raise EnablementConflict(
                    f"cannot enable {name!r} for site {site_id!r} at stage {new_stage!r}: a service runs on a "
                    f"site only at stage 'pilot' or 'live'; move it towards 'pilot' first (next from "
                    f"{new_stage!r}: {', '.join(NEXT_STAGES[new_stage])})")
        on = {n for n, e in current.items() if e.enabled}
        if turn_on and not was_on:
            missing = [d for d in service.depends_on if d not in on]
            if missing:
                raise EnablementConflict(
                    f"cannot enable {name!r} for site {site_id!r}: it depends on "
                    f"{_names(missing)}, which {'is' if len(missing) == 1 else 'are'} not enabled there; "
                    "enable that first")
        elif was_on and not turn_on:
            dependants = [n for n, s in services.items() if name in s.depends_on and n in on]
            if dependants:
                because = "" if enabled is not None else f" (moving it to {new_stage!r} switches it off)"
                raise EnablementConflict(
                    f"cannot disable {name!r} for site {site_id!r}{because}: {_names(dependants)} "
                    f"{'depends' if len(dependants) == 1 else 'depend'} on it; disable that first")
        stored = settings if settings is not None else (previous.settings if previous else None) or {}
        if settings is not None or turn_on:
            valid = validate_settings(service, stored)
            stored = valid.model_dump(mode="json", exclude_unset=True)
        row = conn.execute(
            "INSERT INTO service_enablement (site_id, service, enabled, stage, settings, enabled_at, enabled_by)"
            " VALUES (%(site)s, %(service)s, %(enabled)s, %(stage)s, %(settings)s,"
            "         CASE WHEN %(enabled)s THEN now() END, CASE WHEN %(enabled)s THEN %(by)s END)"
            " ON CONFLICT (site_id, service) DO UPDATE SET enabled = EXCLUDED.enabled,"
            "   stage = EXCLUDED.stage, settings = EXCLUDED.settings,"
            "   enabled_at = CASE WHEN EXCLUDED.enabled AND NOT service_enablement.enabled THEN now()"
            "                     ELSE service_enablement.enabled_at END,"
            "   enabled_by = CASE WHEN EXCLUDED.enabled AND NOT service_enablement.enabled THEN %(by)s"
            "                     ELSE service_enablement.enabled_by END,"
            "   updated_at = now()"
            f" RETURNING {_COLUMNS}",
            {"site": site_id, "service": name, "enabled": turn_on, "stage": new_stage, "settings": Jsonb(stored),
             "by": changed_by},
        ).fetchone()
        if new_stage != old_stage and new_stage is not None:
            record_stage_change(conn, site_id, name, old_stage, new_stage, changed_by,
                                reason or "changed with the enablement switch")
    assert row is not None
    return Enablement(*row)


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
