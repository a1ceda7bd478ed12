"""Customer data transparency: what each service on a site reads and writes, and who looked at what.

Trust rests on two answers a customer can get at any time without asking the provider:
which of their telemetry each switched-on service reads, what it writes and since when
(from the service's own declaration), and an access log of who used, viewed or exported
what on their site (the usage events).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from microservices.sdk import Service
from registry.enablement import site_enablements
from registry.sharing import sharing_of

_EVENT_COLUMNS = ("id", "at", "principal", "action", "service", "detail")


def data_use(conn: psycopg.Connection, services: dict[str, Service], site_id: str) -> list[dict[str, Any]]:
    """Per service switched on for the site (or at pilot/live): fields read, tables written, since when, by whom."""
    credit = sharing_of(conn, services)
    items = []
    for name, switch in sorted(site_enablements(conn, site_id).items()):
        service = services.get(name)
        if service is None or not (switch.enabled or switch.stage in ("pilot", "live")):
            continue
        items.append({
            "service": name, "version": service.version, "summary": service.summary, "author": service.author,
            "contributed_by": credit[name].contributed_by, "enabled": switch.enabled, "stage": switch.stage,
            "enabled_at": switch.enabled_at, "enabled_by": switch.enabled_by,
            "telemetry_fields_read": list(service.consumes),
            "reads_outputs_of": list(service.depends_on),
            "tables_written": list(service.tables),
            "alerts_topic": f"sites/{site_id}/alerts/{name}",
            "kpis_computed": [k.name for k in service.kpis] + ([service.volume.name] if service.volume else []),
        })
    return items


def access_log(conn: psycopg.Connection, site_id: str, *, start: datetime | None = None, end: datetime | None = None,
               action: str | None = None, principal: str | None = None,
               before: tuple[datetime, int] | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The site's usage events, newest first, within ``[start, end)``, before a keyset cursor."""
    rows = conn.execute(
        f"SELECT {', '.join(_EVENT_COLUMNS)} FROM usage_events WHERE site_id = %(site)s"
        " AND (%(start)s::timestamptz IS NULL OR at >= %(start)s) AND (%(end)s::timestamptz IS NULL OR at < %(end)s)"
        " AND (%(action)s::text IS NULL OR action = %(action)s)"
        " AND (%(principal)s::text IS NULL OR principal = %(principal)s)"
        " AND (%(b_at)s::timestamptz IS NULL OR (at, id) < (%(b_at)s, %(b_id)s))"
        " ORDER BY at DESC, id DESC LIMIT %(limit)s",
        {"site": site_id, "start": start, "end": end, "action": action, "principal": principal,
         "b_at": before[0] if before else None, "b_id": before[1] if before else None, "limit": limit},
    ).fetchall()
    return [dict(zip(_EVENT_COLUMNS, row, strict=True)) for row in rows]
