"""Request dependencies: settings, model registry, pipelines, Redis, the API key check."""

from __future__ import annotations

from typing import Annotated

import anyio
import redis
from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader

from model.pipeline import Pipeline
from service.auth import key_error
from service.errors import ApiError, redis_unavailable
from service.registry import ModelLoadError, ModelRegistry, UnknownModelError
from service.settings import ServiceSettings
from worker import queue

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Required on every route but /health, /ready and the API docs when the "
    "server sets HISTOSYNTH_API_KEY.",
)


def get_app_settings(request: Request) -> ServiceSettings:
    """The settings the app was created with."""
    settings: ServiceSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[ServiceSettings, Depends(get_app_settings)]


def get_registry(request: Request) -> ModelRegistry:
    """The app's model registry (built in the lifespan)."""
    registry: ModelRegistry = request.app.state.registry
    return registry


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


def get_limiter(request: Request) -> anyio.CapacityLimiter:
    """Bounds concurrent generations to ``settings.generate_concurrency``."""
    limiter: anyio.CapacityLimiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_limiter)]


def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """401 unless ``X-API-Key`` matches ``settings.api_key`` (no check when it is unset).

    Routes that depend on this are also checked by ``service.auth.ApiKeyMiddleware`` before
    their body is read; this dependency puts the key into the OpenAPI spec.
    """
    err = key_error(settings.api_key, key)
    if err is not None:
        raise err


def connect_redis(request: Request) -> redis.Redis:
    """The app's Redis connection, opened on first use (the API starts without Redis)."""
    state = request.app.state
    settings: ServiceSettings = state.settings
    if state.redis is None:
        if not settings.redis_url:
            raise ApiError(
                503,
                "redis_unavailable",
                "no job queue configured: set REDIS_URL or start with `histosynth serve`",
            )
        state.redis = queue.connect(settings)
    conn: redis.Redis = state.redis
    return conn


def get_redis(conn: Annotated[redis.Redis, Depends(connect_redis)]) -> redis.Redis:
    """A Redis connection that answered a ping (503 JSON error otherwise)."""
    try:
        conn.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise redis_unavailable(exc) from None
    return conn


RedisDep = Annotated[redis.Redis, Depends(get_redis)]


def lookup_model(registry: ModelRegistry, name: str) -> Pipeline:
    """The pipeline called ``name``, or a 404 listing the known models (503 if broken)."""
    try:
        return registry.get(name)
    except UnknownModelError as exc:
        known = ", ".join(exc.known) or "none (train one with POST /jobs/train)"
        raise ApiError(
            404,
            "unknown_model",
            f"unknown model {name!r}; known models: {known}",
            {"known_models": exc.known},
        ) from None
    except ModelLoadError as exc:
        raise ApiError(503, "model_unavailable", str(exc), {"model": name}) from None


async def resolve_model(registry: ModelRegistry, name: str) -> Pipeline:
    """:func:`lookup_model` off the event loop (it may list the store and load a file)."""
    return await run_in_threadpool(lookup_model, registry, name)
