"""The site as a plugin sees it: zones, machines and shifts as small frozen records, read-only.

``SiteConfig`` (sitepulse/sitefile.py) is the site file's parser and validator, with repair, projections and
limits: hundreds of lines a plugin neither needs nor should depend on. ``SiteView`` is the stable part: what was
drawn and registered, by id, in WGS84 lon/lat. Built from the site file by ``Batch.site_view``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import time
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sitepulse.sitefile import SiteConfig


@dataclass(frozen=True, slots=True)
class ZoneView:
    """A drawn zone. ``type`` is how services treat it (load, dump, road, parking, restricted, workshop); ``kind``
    is what was drawn (crusher, blast, ...); ``polygon`` is its outline as (lon, lat) pairs."""

    id: str
    type: str
    name: str
    kind: str
    speed_limit_kmh: float | None
    polygon: tuple[tuple[float, float], ...]

    @property
    def label(self) -> str:
        """The name a person drew, or the id where there is none."""
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class MachineView:
    """A registered machine: kind (hauler, loader, excavator, dozer, other), model, rated payload (None: unknown)."""

    id: str
    kind: str
    model: str
    rated_payload_kg: float | None


@dataclass(frozen=True, slots=True)
class ShiftView:
    """A shift in the site's local time; ``end`` before ``start`` wraps midnight (see ``shifts_at``)."""

    name: str
    start: time
    end: time


@dataclass(frozen=True)
class SiteView:
    """Zones, machines and shifts of one site, by id; empty for a site without a site file."""

    name: str = ""
    timezone: str = "UTC"
    shifts: tuple[ShiftView, ...] = ()
    zones: MappingProxyType[str, ZoneView] = field(default_factory=lambda: MappingProxyType({}))
    machines: MappingProxyType[str, MachineView] = field(default_factory=lambda: MappingProxyType({}))

    def zones_of(self, *types: str) -> tuple[ZoneView, ...]:
        """The zones of these types (``site_view.zones_of("load", "dump")``), in drawing order."""
        return tuple(z for z in self.zones.values() if z.type in types)

    def machines_of(self, *kinds: str) -> tuple[MachineView, ...]:
        """The machines of these kinds, in registration order."""
        return tuple(m for m in self.machines.values() if m.kind in kinds)

    def with_births(self, births: Iterable[tuple[str, str | None, str | None, float | None]]
                    ) -> MappingProxyType[str, MachineView]:
        """Every machine the site knows, by id: the site file's, updated by what devices said of themselves in birth
        messages (``(machine_id, kind, model, rated_payload_kg)``, as ``ingest.fleet.births`` gives them). A birth's
        kind "other", empty model or missing payload leaves the site file's; a machine neither declares is "other"."""
        machines = dict(self.machines)
        for machine_id, kind, model, rated in births:
            declared = machines.get(machine_id)
            machines[machine_id] = MachineView(
                machine_id, kind if kind not in (None, "other") else (declared.kind if declared else "other"),
                model or (declared.model if declared else ""),
                rated or (declared.rated_payload_kg if declared else None))
        return MappingProxyType(machines)

    @classmethod
    def of(cls, site: SiteConfig | None) -> SiteView:
        """The view of a parsed site file (None: an empty view)."""
        if site is None:
            return cls()
        return cls(
            name=site.name,
            timezone=site.timezone,
            shifts=tuple(ShiftView(s.name, s.start, s.end) for s in site.shifts),
            zones=MappingProxyType({z.id: ZoneView(z.id, str(z.type), z.name, z.kind, z.speed_limit_kmh,
                                                   tuple((float(lon), float(lat)) for lon, lat in z.polygon))
                                    for z in site.zones}),
            machines=MappingProxyType({m.id: MachineView(m.id, str(m.kind), m.model, m.rated_payload_kg)
                                       for m in site.machines}),
        )
