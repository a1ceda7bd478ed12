"""Sites: load a site file (YAML or GeoJSON) and read back the sites a token may see."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from registry.api.deps import AdminSiteScopeDep, DbDep, PageDep, PrincipalDep, SiteDep, site_not_found
from sitepulse.errors import InvalidInput, SitePulseError, TooLarge, UnsupportedType
from sitepulse.sitefile import MAX_SITE_FILE_BYTES, parse_site
from sitepulse.sites import save_site

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
             response: Response) -> dict[str, Any]:
    """Create or replace a site from its site file (admin); 201 when new, 422 with the file's problem."""
    try:
        site = parse_site(body, source="site file")
    except SitePulseError as exc:
        raise InvalidInput(str(exc)) from None  # the file's problem, not the request's: 422
    created = save_site(conn, site_id, site)
    if created:
        response.status_code = status.HTTP_201_CREATED
    row = conn.execute("SELECT updated_at FROM sites WHERE site_id = %s", (site_id,)).fetchone()
    # what was repaired in the drawing (a corner crossing itself by centimetres) is said, not refused
    return {**_summary(site_id, site.name, site.model_dump(mode="json"), row[0] if row else None),
            "created": created, "warnings": site.warnings}


@router.get("")
def list_sites(conn: DbDep, principal: PrincipalDep, page: PageDep) -> dict[str, Any]:
    """The sites the caller's token may see, by id."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        return [_summary(*row) for row in conn.execute(
            "SELECT site_id, name, config, updated_at FROM sites"
            " WHERE (%(all)s OR site_id = ANY(%(sites)s)) AND (%(after)s::text IS NULL OR site_id > %(after)s)"
            " ORDER BY site_id LIMIT %(limit)s",
            {"all": principal.is_admin, "sites": sorted(principal.sites), "after": after[0] if after else None,
             "limit": limit},
        ).fetchall()]

    return page.fetch(read, site_id=str)


@router.get("/{site_id}")
def get_site(site_id: SiteDep, conn: DbDep) -> dict[str, Any]:
    """One site's stored configuration (canonical JSON of its site file)."""
    row = conn.execute("SELECT name, config, updated_at FROM sites WHERE site_id = %s", (site_id,)).fetchone()
    if row is None:  # deleted between the access check and this read
        raise site_not_found(site_id)
    return {"site_id": site_id, "name": row[0], "updated_at": row[2], "config": row[1]}
