"""ISO 15143-3 (AEMP 2.0) fleet snapshot routes: JSON by default, XML on ``Accept: application/xml``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from registry.aemp import ID_SEPARATOR, fleet, to_xml
from registry.api.deps import DbDep, PrincipalDep
from sitepulse.errors import NotFound

router = APIRouter(prefix="/aemp", tags=["aemp"])

_XML = {200: {"content": {"application/json": {}, "application/xml": {}}}}


def _answer(request: Request, body: dict[str, Any]) -> Any:
    if "xml" in request.headers.get("accept", "") and "json" not in request.headers.get("accept", ""):
        return Response(to_xml(body), media_type="application/xml")
    return body


@router.get("/Fleet/{page}", responses=_XML)
def fleet_page(page: Annotated[int, Path(ge=1, le=1_000_000)], conn: DbDep, principal: PrincipalDep,
               request: Request) -> Any:
    """One page (100 machines) of the caller's fleet: site tokens see their sites' machines, admins all."""
    body = fleet(conn, principal, page, str(request.base_url))
    if body is None:
        raise NotFound(f"fleet page {page} does not exist")
    return _answer(request, body)


@router.get("/Fleet/Equipment/ID/{equipment_id}", responses=_XML)
def fleet_equipment(equipment_id: Annotated[str, Path(max_length=129, description="site_id:machine_id")],
                    conn: DbDep, principal: PrincipalDep, request: Request) -> Any:
    """One machine's snapshot; its EquipmentID is ``{site_id}:{machine_id}``."""
    site_id, sep, machine_id = equipment_id.partition(ID_SEPARATOR)
    if not sep or not principal.can_see(site_id):
        raise NotFound(f"equipment {equipment_id!r} not found")
    body = fleet(conn, principal, 1, str(request.base_url), one=(site_id, machine_id))
    if body is None:
        raise NotFound(f"equipment {equipment_id!r} not found")
    return _answer(request, body)
