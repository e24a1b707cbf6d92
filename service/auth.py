"""The API key, checked from the request headers before anything reads the body.

Routers declare that their routes need the key with the ``require_api_key`` dependency
(so the OpenAPI spec shows it). FastAPI solves dependencies only after it has read
and parsed the body, so :class:`ApiKeyMiddleware` checks the same routes first: a request
without a valid key gets its 401 as soon as its headers are in, and the connection is
closed instead of reading the rest of an upload.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from fastapi import APIRouter
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ApiError, error_response

API_KEY_HEADER = "X-API-Key"


def key_error(expected: str | None, given: str | None) -> ApiError | None:
    """The 401 for ``given`` when the server expects ``expected`` (None: no key configured)."""
    if not expected:
        return None
    if given is not None and secrets.compare_digest(given.encode(), expected.encode()):
        return None
    reason = "missing" if given is None else "wrong"
    return ApiError(
        401, "unauthorized", f"{reason} API key: send it in the {API_KEY_HEADER} header",
        headers={"WWW-Authenticate": "APIKey"},
    )


def needs_key(router: APIRouter, guard: object) -> bool:
    """Whether the routes of ``router`` depend on the callable ``guard``."""
    return any(dep.dependency is guard for dep in router.dependencies)


class ApiKeyMiddleware:
    """401 (and hang up) on a route that needs the key, judged from the headers alone.

    Args:
        app: the wrapped ASGI app.
        routers: the routers whose routes need the key (included without an extra prefix).
        api_key: the expected key; None or empty turns the check off.
    """

    def __init__(self, app: ASGIApp, routers: Sequence[APIRouter], api_key: str | None) -> None:
        self.app = app
        self.routes: list[BaseRoute] = [route for router in routers for route in router.routes]
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.api_key and self._is_protected(scope):
            err = key_error(self.api_key, _header(scope, b"x-api-key"))
            if err is not None:
                headers = {**(err.headers or {}), "Connection": "close"}
                response = error_response(err.status_code, err.code, err.message, None, headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _is_protected(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self.routes)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None
