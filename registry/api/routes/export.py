"""Exports of a site's telemetry and of the tables its services declare, as streamed CSV or Parquet.

Without ``from`` the export starts a day before ``to`` (default: now); give both for longer
ranges. Every export is an ``export`` usage event, visible to the customer in the access log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from ingest.fields import FLOAT_FIELDS
from microservices.sdk import TimeRangeDep
from registry.api.deps import DbDep, PrincipalDep, SiteDep, StateDep
from registry.api.state import record_export
from registry.enablement import site_enablements
from registry.exports import TELEMETRY_COLUMNS, build_query, csv_chunks, parquet_chunks, table_columns
from sitepulse.errors import NotFound
from sitepulse.sites import zone_names

router = APIRouter(prefix="/api/v1/sites/{site_id}/export", tags=["export"])

Format = Annotated[Literal["csv", "parquet"], Query(alias="format", description="csv or parquet")]
MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}, "description": "the file, streamed"}}


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    return start or end - timedelta(days=1), end


def _stream(state: Any, export: Any, fmt: str, filename: str) -> StreamingResponse:
    chunks = csv_chunks(state.pool, export) if fmt == "csv" else parquet_chunks(state.pool, export)
    return StreamingResponse(chunks, media_type=MEDIA[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{filename}.{fmt}"'})


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@router.get("/telemetry", response_class=StreamingResponse, responses=_FILE_RESPONSES)
def export_telemetry(site_id: SiteDep, period: TimeRangeDep, state: StateDep, principal: PrincipalDep,
                     request: Request, fmt: Format = "csv") -> StreamingResponse:
    """The site's raw telemetry in [from, to) by machine and time (default: the last day), streamed."""
    start, end = _window(period.start, period.end)
    export = build_query("public", "telemetry", [(c, _TELEMETRY_TYPES[c]) for c in TELEMETRY_COLUMNS], site_id,
                         start, end, order=("machine_id", "ts", "seq"))
    record_export(request, site_id, None, principal, "telemetry", fmt)
    return _stream(state, export, fmt, f"{site_id}-telemetry-{_stamp(start)}-{_stamp(end)}")


_TELEMETRY_TYPES = {"site_id": "text", "machine_id": "text", "ts": "timestamp with time zone", "seq": "bigint",
                    "engine_on": "boolean", "extra": "jsonb",
                    **{name: "double precision" for name, _, _ in FLOAT_FIELDS}}


@router.get("/{service}/{table}", response_class=StreamingResponse, responses=_FILE_RESPONSES)
def export_service_table(
    site_id: SiteDep, service: Annotated[str, Path(max_length=64)], table: Annotated[str, Path(max_length=64)],
    period: TimeRangeDep, conn: DbDep, state: StateDep, principal: PrincipalDep, request: Request,
    fmt: Format = "csv",
) -> StreamingResponse:
    """One table a service declares (e.g. ``weight-loading/cycles``), the site's rows in [from, to), streamed.

    Only services switched on for the site (or ever piloted there) and only tables they declare."""
    installed = state.services.get(service)
    switch = site_enablements(conn, site_id).get(service)
    if installed is None or switch is None or not (switch.enabled or switch.stage is not None):
        raise NotFound(f"service {service!r} is not used on site {site_id!r}")
    qualified = f"{installed.schema}.{table}"
    if qualified not in installed.tables:
        raise NotFound(f"service {service!r} declares no table {table!r}; "
                       f"it writes {', '.join(t.split('.', 1)[1] for t in installed.tables) or 'nothing'}")
    columns = table_columns(conn, installed.schema, table)
    if not columns:
        raise NotFound(f"table {qualified} does not exist yet")
    start, end = _window(period.start, period.end)
    export = build_query(installed.schema, table, columns, site_id, start, end, zone_names=zone_names(conn, site_id))
    record_export(request, site_id, service, principal, qualified, fmt)
    return _stream(state, export, fmt, f"{site_id}-{service}-{table}-{_stamp(start)}-{_stamp(end)}")
