"""Finding services: the entry-point group ``sitepulse.microservices``, filtered and ordered.

Built-in services register exactly like third-party ones. ``SITEPULSE_LOAD_SERVICES``
(comma-separated entry-point names) limits which are imported at all, as Datasette's
DATASETTE_LOAD_PLUGINS does; a broken one is skipped (sitepulse/plugins.py).
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from microservices.sdk import Service, validate_declaration
from sitepulse.errors import SitePulseError
from sitepulse.migrations import MigrationSource
from sitepulse.plugins import load_plugins

ENTRY_POINT_GROUP = "sitepulse.microservices"
RUNNER_MIGRATIONS = MigrationSource("microservices", Path(__file__).parent / "migrations", order=50)


def _instantiate(found: object, entry_name: str) -> Service:
    service = found() if isinstance(found, type) else found
    if not isinstance(service, Service):
        raise SitePulseError(f"entry point {entry_name!r} in {ENTRY_POINT_GROUP} is not a sitepulse Service")
    return service


def discover_services(load: str | None = None) -> dict[str, Service]:
    """Installed services by name, in dependency order; ``load`` limits them by entry-point name before any is
    imported, and a service whose package fails to import is reported in one line and skipped."""
    services: dict[str, Service] = {}
    for entry_name, found in load_plugins(ENTRY_POINT_GROUP, load, "SITEPULSE_LOAD_SERVICES").items():
        service = _instantiate(found, entry_name)
        validate_declaration(service)
        if service.name in services:
            raise SitePulseError(f"two installed services are called {service.name!r}")
        services[service.name] = service
    return order_by_dependencies(services)


def order_by_dependencies(services: dict[str, Service]) -> dict[str, Service]:
    """The services with every dependency before its dependants; missing or circular ones refused."""
    for service in services.values():
        for dependency in service.depends_on:
            if dependency not in services:
                raise SitePulseError(
                    f"micro-service {service.name!r} depends on {dependency!r}, "
                    "which is not installed or not loaded"
                )
    try:
        order = list(TopologicalSorter({n: s.depends_on for n, s in services.items()}).static_order())
    except CycleError as exc:
        raise SitePulseError(f"micro-services depend on each other in a circle: {exc.args[1]}") from None
    return {name: services[name] for name in order}


def migration_sources() -> list[MigrationSource]:
    """The runner's tables, then each installed service's own schema, in dependency order."""
    sources = [RUNNER_MIGRATIONS]
    for index, service in enumerate(discover_services().values()):
        if service.migrations is not None:
            sources.append(MigrationSource(service.name, Path(service.migrations), order=100 + index))
    return sources
