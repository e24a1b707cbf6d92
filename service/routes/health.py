"""GET /health (liveness) and GET /ready (readiness); neither needs the API key."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.deps import RegistryDep, SettingsDep, connect_redis
from service.errors import ApiError
from service.registry import ModelRegistry
from service.schemas import Check, HealthResponse, ReadyResponse
from worker.settings import Settings

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return version("histosynth")
    except PackageNotFoundError:
        return "unknown"


@router.get("/health", response_model=HealthResponse, summary="Liveness")
def health() -> HealthResponse:
    """The process is up and answering (no dependency is checked)."""
    return HealthResponse(version=_version())


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "A check failed."}},
    summary="Readiness",
)
def ready(request: Request, settings: SettingsDep, registry: RegistryDep) -> JSONResponse:
    """Default model loaded, Redis answering, model store and data root reachable."""
    checks = {
        "model": _check_model(registry),
        "redis": _check_redis(request),
        "storage": _check_storage(registry, settings),
    }
    body = ReadyResponse(ready=all(c.ok for c in checks.values()), checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


def _check_model(registry: ModelRegistry) -> Check:
    loaded = registry.loaded()
    ok = registry.default_model in loaded
    names = ", ".join(loaded) or "none"
    detail = f"{len(loaded)} model(s) loaded ({names})"
    if not ok:
        detail += f"; the default model {registry.default_model!r} is not loaded"
    return Check(ok=ok, detail=detail)


def _check_redis(request: Request) -> Check:
    try:
        connect_redis(request).ping()
    except ApiError as exc:
        return Check(ok=False, detail=exc.message)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        return Check(ok=False, detail=f"unreachable: {exc}")
    return Check(ok=True, detail="answering")


def _check_storage(registry: ModelRegistry, settings: Settings) -> Check:
    try:
        registry.store.storage.check()
    except Exception as exc:  # any store failure is a failed check, not a 500
        uri = registry.store.storage.uri
        return Check(ok=False, detail=f"model store {uri} unreachable: {exc}")
    root = Path(settings.data_root)
    probe = root if root.exists() else root.parent
    if not os.access(probe, os.W_OK):
        return Check(ok=False, detail=f"data root {root} is not writable")
    return Check(ok=True, detail=f"model store {registry.store.storage.uri} reachable; "
                 f"data root {root} writable")
