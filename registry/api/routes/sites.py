"""Sites: load a site file (YAML or GeoJSON), read back the sites a token may see, redraw a site's zones on the
map, and list, read and restore the versions every save makes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from registry.api.deps import AdminSiteDep, AdminSiteScopeDep, DbDep, PageDep, PrincipalDep, SiteDep, site_not_found
from sitepulse.errors import InvalidInput, SitePulseError, TooLarge, UnsupportedType
from sitepulse.sitefile import MAX_SITE_FILE_BYTES, parse_site
from sitepulse.sites import (
    load_site_version,
    redrawn_site,
    restore_site_version,
    save_site_version,
    site_versions,
    stored_site,
    stored_sites,
)

router = APIRouter(prefix="/api/v1/sites", tags=["sites"])

SITE_FILE_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json",
                   "application/geo+json", "application/vnd.google-earth.kml+xml", "application/xml", "text/xml"}

_SITE_FILE_BODY = {
    "required": True,
    "description": "the site file: YAML, GeoJSON (a FeatureCollection with the site's foreign members; a "
                   "projected crs is read) or KML (Google Earth polygons)",
    "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/geo+json": {"schema": {"type": "object"}},
        "application/json": {"schema": {"type": "object"}},
    },
}


async def site_file_body(request: Request) -> bytes:
    """The raw request body, refused early when its type or size cannot be a site file."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in SITE_FILE_TYPES:
        raise UnsupportedType(f"Content-Type {content_type} is not a site file; send application/yaml "
                              "or application/geo+json or application/vnd.google-earth.kml+xml")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_SITE_FILE_BYTES:
        raise TooLarge(f"a site file may be at most {MAX_SITE_FILE_BYTES // 1024 // 1024} MB")
    body = await request.body()
    if len(body) > MAX_SITE_FILE_BYTES:
        raise TooLarge(f"a site file may be at most {MAX_SITE_FILE_BYTES // 1024 // 1024} MB")
    if not body.strip():
        raise InvalidInput("the body is empty; send the site file")
    return body


def _summary(site_id: str, name: str, config: dict[str, Any], updated_at: Any) -> dict[str, Any]:
    return {"site_id": site_id, "name": name, "zones": len(config.get("zones", [])),
            "machines": len(config.get("machines", [])), "updated_at": updated_at}


@router.put("/{site_id}", status_code=status.HTTP_200_OK, openapi_extra={"requestBody": _SITE_FILE_BODY},
            responses={201: {"description": "the site was created"}})
def put_site(site_id: AdminSiteScopeDep, body: Annotated[bytes, Depends(site_file_body)], conn: DbDep,
             response: Response, principal: PrincipalDep) -> dict[str, Any]:
    """Create or replace a site from its site file (admin): a new version of the site; 201 when new, 422 with the
    file's problem."""
    try:
        site = parse_site(body, source="site file")
    except SitePulseError as exc:
        raise InvalidInput(str(exc)) from None  # the file's problem, not the request's: 422
    version, created = save_site_version(conn, site_id, site, by=principal.name)
    if created:
        response.status_code = status.HTTP_201_CREATED
    stored = stored_site(conn, site_id)
    # what was repaired in the drawing (a corner crossing itself by centimetres) is said, not refused
    return {**_summary(site_id, site.name, site.model_dump(mode="json"), stored.updated_at if stored else None),
            "created": created, "version": version.version, "warnings": site.warnings}


@router.get("")
def list_sites(conn: DbDep, principal: PrincipalDep, page: PageDep) -> dict[str, Any]:
    """The sites the caller's token may see, by id."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        visible = None if principal.is_admin else sorted(principal.sites)
        return [_summary(s.site_id, s.name, s.config, s.updated_at)
                for s in stored_sites(conn, visible, after[0] if after else None, limit)]

    return page.fetch(read, site_id=str)


@router.get("/{site_id}")
def get_site(site_id: SiteDep, conn: DbDep) -> dict[str, Any]:
    """One site's stored configuration (canonical JSON of its site file)."""
    stored = stored_site(conn, site_id)
    if stored is None:  # deleted between the access check and this read
        raise site_not_found(site_id)
    return {"site_id": site_id, "name": stored.name, "updated_at": stored.updated_at, "version": stored.version,
            "config": stored.config}


class DrawnZone(BaseModel):
    """A zone as drawn on the map: lon/lat corners, its kind (or service type), name and speed limit."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=64, description="the zone's id; a new zone gets one from its name")
    type: str | None = Field(None, max_length=64, description="load, dump, road, parking, restricted, workshop")
    kind: str | None = Field(None, max_length=64, description="as drawn (crusher, face...); sets type if none")
    name: str = Field("", max_length=200)
    speed_limit_kmh: float | None = None
    polygon: list[tuple[float, float]] = Field(max_length=5000, description="[lon, lat] corners")


class DrawnZones(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zones: list[DrawnZone] = Field(max_length=1000)
    base_version: int | None = Field(None, description="the version drawn on; 409 when another was saved since")
    note: str | None = Field(None, max_length=500)


VersionPath = Annotated[int, Path(ge=1, le=2_147_483_647, description="a version number")]


@router.put("/{site_id}/zones")
def put_zones(site_id: AdminSiteDep, body: DrawnZones, conn: DbDep, principal: PrincipalDep) -> dict[str, Any]:
    """Replace the site's zones by those drawn on the map (admin): checked and repaired as an uploaded file, saved
    as a new version; services use it from their next batch on (results already computed are kept)."""
    stored = stored_site(conn, site_id)
    if stored is None:
        raise site_not_found(site_id)
    try:
        site = redrawn_site(stored.config, [z.model_dump() for z in body.zones])
    except SitePulseError as exc:
        raise InvalidInput(str(exc)) from None
    version, _ = save_site_version(conn, site_id, site, by=principal.name, source="drawing", note=body.note,
                                   base_version=body.base_version)
    return {**version.summary(), "warnings": site.warnings, "config": site.model_dump(mode="json")}


@router.get("/{site_id}/versions")
def list_versions(site_id: SiteDep, conn: DbDep) -> dict[str, Any]:
    """Every version of the site file, newest first: who saved it, how (upload, drawing, restore), which zones
    it added, changed and removed."""
    return {"items": [v.summary() for v in site_versions(conn, site_id)]}


@router.get("/{site_id}/versions/{version}")
def get_version(site_id: SiteDep, version: VersionPath, conn: DbDep) -> dict[str, Any]:
    """One version of the site file with its config."""
    found, config = load_site_version(conn, site_id, version)
    return {**found.summary(), "config": config}


@router.post("/{site_id}/versions/{version}/restore")
def restore_version(site_id: AdminSiteDep, version: VersionPath, conn: DbDep,
                    principal: PrincipalDep) -> dict[str, Any]:
    """Make an earlier version current again (admin), saved as a new version so the history stays whole."""
    return restore_site_version(conn, site_id, version, by=principal.name).summary()
