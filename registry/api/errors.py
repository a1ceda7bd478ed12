"""Every error the API returns is JSON ``{"detail": "<one readable reason>"}``, never a traceback.

The one place where the kernel's error kinds (``sitepulse/errors.py``) become status codes:
``STATUS`` below; any other ``SitePulseError`` is 400. Routes and the domain raise those kinds,
never ``HTTPException``. Request validation is 422 with the offending parameter named in
``detail`` and FastAPI's list kept in ``errors``; unknown paths are 404 naming the path.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.api.headers import ERROR_HEADERS
from sitepulse.errors import (
    Conflict,
    InvalidInput,
    NotAllowed,
    NotAuthenticated,
    NotFound,
    SitePulseError,
    TooLarge,
    UnsupportedType,
)

log = logging.getLogger(__name__)

STATUS: dict[type[SitePulseError], int] = {
    NotAuthenticated: status.HTTP_401_UNAUTHORIZED,
    NotAllowed: status.HTTP_403_FORBIDDEN,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    TooLarge: status.HTTP_413_CONTENT_TOO_LARGE,
    UnsupportedType: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    InvalidInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
}
HEADERS: dict[int, dict[str, str]] = {status.HTTP_401_UNAUTHORIZED: {"WWW-Authenticate": "Bearer"}}

_WHERE = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie",
          "body": "body field"}


def describe_validation_error(error: dict[str, Any]) -> str:
    """One error of a pydantic/FastAPI list as ``query parameter 'limit': <message>``."""
    loc = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc:
        return message
    where = _WHERE.get(loc[0])
    if where is None:
        return f"{'.'.join(loc)}: {message}"
    if len(loc) == 1 or error.get("type") == "json_invalid":
        return f"{'request body' if loc[0] == 'body' else where}: {message}"
    return f"{where} {'.'.join(loc[1:])!r}: {message}"


def describe_validation_errors(errors: list[dict[str, Any]]) -> str:
    """The whole list as one sentence (first three errors, then a count)."""
    parts = [describe_validation_error(e) for e in errors[:3]]
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    return "; ".join(parts) or "invalid request"


def _clean(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Echoing ``input`` back could repeat a secret or a huge body; loc/msg/type say enough.
    return [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in jsonable_encoder(errors)]


# Starlette's own refusals (unknown path, wrong method) and any HTTPException a plugin's route raises.
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if exc.status_code == status.HTTP_404_NOT_FOUND and detail == "Not Found":
        detail = f"no such path: {request.url.path}"
    elif exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED and detail == "Method Not Allowed":
        detail = f"{request.method} is not allowed on {request.url.path}"
    headers = getattr(exc, "headers", None)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    return JSONResponse(
        {"detail": describe_validation_errors(errors), "errors": _clean(errors)},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def status_of(exc: SitePulseError) -> int:
    """The status code of an error kind: its own or its nearest ancestor's in ``STATUS``, else 400."""
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return status.HTTP_400_BAD_REQUEST


async def _user_error(request: Request, exc: SitePulseError) -> JSONResponse:
    code = status_of(exc)
    return JSONResponse({"detail": str(exc)}, status_code=code, headers=HEADERS.get(code))


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable while serving %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "the database is unavailable or busy; try again shortly"},
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"})


async def _unstorable_value(request: Request, exc: psycopg.DataError) -> JSONResponse:
    # Values pass validation yet PostgreSQL refuses them, e.g. a NUL character inside a text or JSON string.
    log.warning("refused a value in %s %s: %s", request.method, request.url.path, exc)
    reason = "the request holds a value the database cannot store (e.g. a NUL character)"
    return JSONResponse({"detail": reason}, status_code=status.HTTP_400_BAD_REQUEST)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response, so the traceback still reaches the server log.
    return JSONResponse({"detail": "internal error; the server log has the details"},
                        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR, headers=ERROR_HEADERS)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error shape for every kind of failure."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SitePulseError, _user_error)
    app.add_exception_handler(psycopg.DataError, _unstorable_value)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _internal_error)
