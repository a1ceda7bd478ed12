"""Co-creation that cycles back: a service a customer contributed reaches other customers once shared.

A service is *contributed* when its declaration names a customer: ``contributed_by`` (when
the SDK has it) or an ``author`` equal to a customer of some site (``site_customers``), or
when an admin registers the contributor (``PUT /api/v1/services/{name}/sharing``). Until the
provider marks it shared, a contributed service is visible, and can be staged or enabled,
only on its contributor's own sites; afterwards every site's catalogue shows it, credited
to its contributor. Services built by the provider are visible everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from microservices.sdk import Service
from registry.tokens import Principal
from sitepulse.errors import Conflict


@dataclass(frozen=True)
class Sharing:
    """Who contributed a service (None: the provider built it) and whether it is shared with everyone."""

    service: str
    contributed_by: str | None = None
    shared: bool = False
    shared_at: datetime | None = None
    shared_by: str | None = None

    @property
    def open_to_all(self) -> bool:
        return self.contributed_by is None or self.shared

    def as_dict(self) -> dict[str, Any]:
        credit = f"contributed by {self.contributed_by}" if self.contributed_by else None
        return {"contributed_by": self.contributed_by, "shared": self.open_to_all, "shared_at": self.shared_at,
                "shared_by": self.shared_by, "credit": credit}


class NotShared(Conflict):
    """A contributed service used on another customer's site before it is shared."""


def customers(conn: psycopg.Connection, sites: list[str] | None = None) -> dict[str, str]:
    """The customer of each site that has one (None: every site)."""
    rows = conn.execute("SELECT site_id, customer FROM site_customers"
                        " WHERE %(all)s OR site_id = ANY(%(sites)s)",
                        {"all": sites is None, "sites": sites or []})
    return dict(rows.fetchall())


def set_customer(conn: psycopg.Connection, site_id: str, customer: str) -> None:
    """Record which customer a site belongs to (priced and shared per customer)."""
    conn.execute("INSERT INTO site_customers (site_id, customer) VALUES (%s, %s) ON CONFLICT (site_id)"
                 " DO UPDATE SET customer = EXCLUDED.customer, updated_at = now()", (site_id, customer))


def sharing_of(conn: psycopg.Connection, services: dict[str, Service]) -> dict[str, Sharing]:
    """Each installed service's contributor and sharing, from the stored record or its declaration."""
    stored = {row[0]: Sharing(*row) for row in conn.execute(
        "SELECT service, contributed_by, shared, shared_at, shared_by FROM service_sharing")}
    known = {row[0] for row in conn.execute("SELECT DISTINCT customer FROM site_customers")}
    result = {}
    for name, service in services.items():
        record = stored.get(name, Sharing(name))
        declared = getattr(service, "contributed_by", None) or (service.author if service.author in known else None)
        if record.contributed_by is None and declared:
            record = Sharing(name, declared, record.shared, record.shared_at, record.shared_by)
        result[name] = record
    return result


def set_sharing(conn: psycopg.Connection, service: str, *, shared: bool, by: str,
                contributed_by: str | None = None) -> None:
    """Mark a service shared (or private again) and optionally register its contributor."""
    conn.execute(
        "INSERT INTO service_sharing (service, contributed_by, shared, shared_at, shared_by)"
        " VALUES (%(s)s, %(c)s, %(shared)s, CASE WHEN %(shared)s THEN now() END, CASE WHEN %(shared)s THEN %(by)s END)"
        " ON CONFLICT (service) DO UPDATE SET contributed_by = COALESCE(%(c)s, service_sharing.contributed_by),"
        "  shared = EXCLUDED.shared,"
        "  shared_at = CASE WHEN EXCLUDED.shared AND NOT service_sharing.shared THEN now()"
        "                   WHEN EXCLUDED.shared THEN service_sharing.shared_at END,"
        "  shared_by = CASE WHEN EXCLUDED.shared AND NOT service_sharing.shared THEN %(by)s"
        "                   WHEN EXCLUDED.shared THEN service_sharing.shared_by END,"
        "  updated_at = now()",
        {"s": service, "c": contributed_by, "shared": shared, "by": by},
    )


def visible_services(conn: psycopg.Connection, services: dict[str, Service], principal: Principal) -> set[str]:
    """Names of the services the caller's catalogue shows: all for admins, else open or own contributions."""
    if principal.is_admin:
        return set(services)
    own = set(customers(conn, sorted(principal.sites)).values())
    return {name for name, s in sharing_of(conn, services).items() if s.open_to_all or s.contributed_by in own}


def check_usable_on_site(conn: psycopg.Connection, services: dict[str, Service], name: str, site_id: str) -> None:
    """Raise NotShared when a contributed, unshared service is put on another customer's site."""
    record = sharing_of(conn, {name: services[name]})[name]
    if record.open_to_all:
        return
    customer = customers(conn, [site_id]).get(site_id)
    if customer != record.contributed_by:
        raise NotShared(
            f"service {name!r} was contributed by {record.contributed_by!r} and is not shared yet, so only "
            f"{record.contributed_by!r}'s sites may use it; site {site_id!r} belongs to "
            f"{repr(customer) if customer else 'no customer'}. Share it first (PUT /api/v1/services/{name}/sharing)")
