"""One JSON error shape for every failure, and the exception handlers that produce it.

Every error response body is::

    {"error": {"code": "unknown_model", "message": "...", "details": {...} | null}}

``code`` is a stable machine-readable string, ``message`` a sentence a user can act on,
``details`` optional structured context (known models, allowed values, field errors).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

log = logging.getLogger("histosynth.service")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "content_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
}


class ApiError(StarletteHTTPException):
    """An HTTP error with our code, message and details.

    Args:
        status_code: HTTP status.
        code: stable machine-readable error code, e.g. ``"unknown_model"``.
        message: what went wrong and how to fix it.
        details: optional JSON-serialisable context.
        headers: optional extra response headers.
    """

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.details = details


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSONResponse in the one error shape."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status_code, headers=dict(headers or {}))


def validation_error(field: str, message: str, kind: str) -> ApiError:
    """A 422 in the shape of FastAPI's own: ``details`` lists the field."""
    return ApiError(
        422, "validation_error", f"invalid request: {field}: {message}",
        [{"field": field, "message": message, "type": kind}],
    )


def redis_unavailable(exc: Exception | None = None) -> ApiError:
    """503 for job routes when the job queue (Redis) cannot be reached."""
    reason = f": {exc}" if exc else ""
    return ApiError(
        503,
        "redis_unavailable",
        "the job queue (Redis) is unreachable; jobs cannot be submitted or inspected right now"
        f"{reason}. /generate and /segment still work.",
    )


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        return _method_not_allowed(request)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /docs"
    return error_response(exc.status_code, code, message, None, exc.headers)


def _method_not_allowed(request: Request) -> Response:
    """OPTIONS: 204 with ``Allow``; any other method: 405 naming the allowed ones.

    Starlette's own 405 names the methods of the first route matching the path only, and
    ``GET /jobs/{id}`` and ``DELETE /jobs/{id}`` are two routes.
    """
    allowed = allowed_methods(request.app.state.api_routes, request.scope)
    headers = {"Allow": ", ".join(allowed)}
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=headers)
    return error_response(
        405, "method_not_allowed",
        f"{request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}",
        {"allowed": allowed}, headers,
    )


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves on the scope's path (OPTIONS included)."""
    methods = {"OPTIONS"}
    for route in routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "")), "type": e.get("type")}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return error_response(422, "validation_error", f"invalid request: {summary}", errors)


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unreachable on %s: %s", request.url.path, exc)
    return await _api_error(request, redis_unavailable(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500, "internal_error", "unexpected server error; the server log has the details"
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers so that every error leaves in the one JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RedisConnectionError, _redis_error)
    app.add_exception_handler(RedisTimeoutError, _redis_error)
    app.add_exception_handler(Exception, _unexpected)


_DESCRIPTIONS = {
    400: "Bad input: unreadable file, unknown mask values or colours, wrong combination.",
    401: "Missing or wrong X-API-Key.",
    403: "Output or input location not allowed.",
    404: "Unknown model or job.",
    409: "The job cannot be cancelled in its current state.",
    413: "Upload too large or too many pixels.",
    422: "A field is missing or out of range.",
    503: "Job queue (Redis) or model unavailable.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting the error shape for ``codes``."""
    from service.schemas import ErrorResponse

    return {c: {"model": ErrorResponse, "description": _DESCRIPTIONS[c]} for c in codes}
