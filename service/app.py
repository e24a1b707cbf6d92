"""The FastAPI application: ``create_app(settings)`` wires routers, errors and the lifespan.

The lifespan loads every model of the store once (in a worker thread) and builds the
generation limiter. Redis is connected lazily on the first job request, so the API serves
/generate and /segment while Redis is down (/ready reports it; job routes answer 503).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from service.errors import install_error_handlers
from service.limits import BodyLimitMiddleware
from service.registry import ModelRegistry
from service.routes import generate, health, jobs, masks, models, pairs, segment, studio
from worker.models import ModelStore
from worker.settings import Settings, get_settings

log = logging.getLogger("histosynth.service")

DESCRIPTION = """\
Turn semantic masks into synthetic H&E histology images with a pyramid of conditional
GANs, segment images with the model's segmenter, and run bulk augmentation and training
jobs on RQ workers.

HistoSynth Studio, a web page to draw masks, generate variants, segment tiles and run
jobs with this API, is served at `/`.

Every error has the shape `{"error": {"code", "message", "details"}}`. When the server
sets `API_KEY`, every route but `/health` and `/ready` needs the `X-API-Key` header.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load models once at start-up; close the Redis connection at shutdown."""
    settings: Settings = app.state.settings
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


def create_app(settings: Settings | None = None) -> FastAPI:
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
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    for module in (generate, segment, masks, models, jobs, pairs, health, studio):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=studio.STATIC_DIR), name="static")
    return app


def _version() -> str:
    return health._version()
