"""The FastAPI application: ``create_app(settings)`` wires routers, errors and the lifespan.

The lifespan loads every model of the store once (in a worker thread) and builds the
generation limiter. Redis is connected lazily on the first job request, so the API serves
/generate and /segment while Redis is down (/ready reports it; job routes answer 503).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from service.auth import ApiKeyMiddleware, needs_key
from service.deps import require_api_key
from service.errors import install_error_handlers
from service.limits import BodyLimitMiddleware
from service.registry import ModelRegistry
from service.routes import generate, health, images, jobs, masks, models, pairs, segment, studio
from service.settings import ServiceSettings, get_settings
from worker.models import ModelStore

log = logging.getLogger("histosynth.service")

DESCRIPTION = """\
Turn semantic masks into synthetic H&E histology images with a pyramid of conditional
GANs, segment images with the model's segmenter, and run bulk augmentation and training
jobs on RQ workers.

HistoSynth Studio, a web page to draw masks, generate variants, segment tiles and run
jobs with this API, is served at `/`.

Every error has the shape `{"error": {"code", "message", "details"}}`. When the server
sets `HISTOSYNTH_API_KEY`, every route but `/health`, `/ready` and this description
(`/docs`, `/redoc`, `/openapi.json`) needs the `X-API-Key` header; it is checked before the
request body is read.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load models once at start-up; close the Redis connection at shutdown."""
    settings: ServiceSettings = app.state.settings
    registry = ModelRegistry(ModelStore(settings), settings.device, settings.default_model)
    try:
        await run_in_threadpool(registry.refresh)
    except Exception as exc:  # start anyway: /ready reports it, /models retries
        log.error("cannot list the model store %s: %s", settings.model_store, exc)
    loaded = registry.loaded()
    log.info("serving %d model(s): %s", len(loaded), ", ".join(loaded) or "none")
    app.state.registry = registry
    app.state.limiter = anyio.CapacityLimiter(max(1, settings.generate_concurrency))
    app.state.redis = None
    try:
        yield
    finally:
        if app.state.redis is not None:
            app.state.redis.close()


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the API.

    Args:
        settings: configuration; ``None`` reads it from the environment (``get_settings()``).
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="HistoSynth",
        summary="Synthetic H&E histology from semantic masks.",
        description=DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.openapi = _openapi_with_integer_bounds(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    # outermost: a request without a valid key is refused before any limit or body read;
    # the studio page and its files (/, /static) need no key: they hold no secret
    modules = (generate, segment, masks, images, models, jobs, pairs, health, studio)
    routers = [module.router for module in modules]
    keyed = [router for router in routers if needs_key(router, require_api_key)]
    app.add_middleware(ApiKeyMiddleware, routers=keyed, api_key=settings.api_key)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=studio.STATIC_DIR), name="static")
    # every route, flat (405/OPTIONS answers list the methods of all routes of a path)
    app.state.api_routes = [*app.routes, *(route for r in routers for route in r.routes)]
    return app


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def integer_bounds(node: Any) -> Any:
    """Write the bounds of integer schemas as integers (FastAPI's OpenAPI model holds
    them as floats: ``"maximum": 2147483646.0``)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = int(value)
        for value in node.values():
            integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            integer_bounds(value)
    return node


def _openapi_with_integer_bounds(app: FastAPI) -> Callable[[], dict[str, Any]]:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = integer_bounds(build())
        return app.openapi_schema

    return openapi


def _version() -> str:
    return health._version()
