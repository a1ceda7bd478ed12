"""The co-creation lifecycle of one site on one board: needs -> prioritised -> in development -> implemented
-> evaluated -> retired, with who raised and voted, where each service runs, its latest verdict and who
contributed it. Composed from the needs backlog, the switches, the stage audit, sharing and the evaluation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from microservices.sdk import Service
from registry.evaluation import Rules, evaluate
from registry.needs import list_needs, votes_and_comments
from registry.sharing import sharing_of, visible_services
from registry.tokens import Principal

COLUMNS = (
    ("needs", "Needs", "raised and voted on; not yet answered by a service"),
    ("prioritized", "Prioritised", "chosen to be built next"),
    ("developing", "In development", "being built or adapted"),
    ("trial", "On trial", "run on the site's recorded history, not switched on: what it would have found"),
    ("implemented", "Implemented", "switched on here (pilot or live), too early to judge"),
    ("evaluated", "Evaluated", "switched on long enough to judge: the latest verdict"),
    ("retired", "Retired", "switched off for good, with the reason"),
)
_STAGE_COLUMN = {"proposed": "needs", "prioritized": "prioritized", "developing": "developing", "trial": "trial",
                 "pilot": "implemented", "live": "implemented", "retired": "retired"}


def _last_changes(conn: psycopg.Connection, site_id: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT DISTINCT ON (service) service, from_stage, to_stage, changed_by, reason, changed_at"
        " FROM service_stage_changes WHERE site_id = %s ORDER BY service, changed_at DESC, id DESC", (site_id,))
    keys = ("from_stage", "to_stage", "changed_by", "reason", "changed_at")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


def _sites_using(conn: psycopg.Connection, visible: list[str] | None) -> dict[str, dict[str, Any]]:
    """Per service: how many sites run it, and which of them the caller may see."""
    rows = conn.execute("SELECT service, count(*), array_agg(site_id ORDER BY site_id) FILTER (WHERE"
                        " %(all)s OR site_id = ANY(%(sites)s)) FROM service_enablement WHERE enabled"
                        " GROUP BY service", {"all": visible is None, "sites": visible or []})
    return {r[0]: {"count": r[1], "visible": r[2] or []} for r in rows}


def lifecycle_board(conn: psycopg.Connection, services: dict[str, Service], site_id: str, principal: Principal,
                    now: datetime | None = None) -> dict[str, Any]:
    """The board: one list of cards per column, and the contributed services with where they run."""
    now = now or datetime.now(UTC)
    rules = Rules()
    needs = [n.as_dict() for n in list_needs(conn, site_id)]
    extra = votes_and_comments(conn, [n["id"] for n in needs], principal.name)
    needs = [{**n, **extra[n["id"]]} for n in needs]
    shown = visible_services(conn, services, principal)
    credit = sharing_of(conn, services)
    using = _sites_using(conn, None if principal.is_admin else sorted(principal.sites))
    changes = _last_changes(conn, site_id)
    verdicts = {item["service"]: item for item in evaluate(conn, {k: v for k, v in services.items() if k in shown},
                                                            [site_id], as_of=now, rules=rules)}
    switches = conn.execute("SELECT service, enabled, stage, enabled_at, enabled_by FROM service_enablement"
                            " WHERE site_id = %s AND stage IS NOT NULL ORDER BY service", (site_id,)).fetchall()
    columns: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in COLUMNS}
    answered: set[int] = set()
    for name, enabled, stage, enabled_at, enabled_by in switches:
        if name not in services or name not in shown:
            continue
        linked = [n for n in needs if n["service"] == name]
        answered.update(n["id"] for n in linked)
        verdict = verdicts.get(name)
        evaluated = verdict is not None and verdict["windows"]["after"]["days"] >= rules.min_days
        column = _STAGE_COLUMN.get(stage, "needs")
        if column == "implemented" and evaluated:
            column = "evaluated"
        columns[column].append({
            "kind": "service", "service": name, "summary": services[name].summary, "version": services[name].version,
            "stage": stage, "enabled": enabled, "enabled_at": enabled_at, "enabled_by": enabled_by,
            "contributed_by": credit[name].contributed_by, "sites_using": using.get(name, {"count": 0, "visible": []}),
            "needs": [{"id": n["id"], "text": n["text"], "votes": n["votes"]} for n in linked],
            "evaluation": None if verdict is None else {
                "recommendation": verdict["recommendation"], "after_days": verdict["windows"]["after"]["days"],
                "reason": verdict["reasons"][0] if verdict["reasons"] else None,
                "improved": [k["name"] for k in verdict["kpis"] if k["verdict"] == "improved"],
                "worsened": [k["name"] for k in verdict["kpis"] if k["verdict"] == "worsened"]},
            "last_change": changes.get(name),
        })
    columns["needs"][:0] = [{"kind": "need", **n} for n in needs if n["status"] == "open" and n["id"] not in answered]
    contributed = [{"service": name, "contributed_by": credit[name].contributed_by, "shared": credit[name].open_to_all,
                    "sites_using": using.get(name, {"count": 0, "visible": []})}
                   for name in services if name in shown and credit[name].contributed_by]
    return {"site_id": site_id, "as_of": now,
            "columns": [{"key": key, "title": title, "description": text, "items": columns[key]}
                        for key, title, text in COLUMNS],
            "closed_needs": [n for n in needs if n["status"] != "open"],
            "contributed": contributed}
