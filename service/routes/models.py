"""GET /models and GET /models/{name}: what the server can generate with."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends

from service.deps import RegistryDep, SettingsDep, lookup_model, require_api_key
from service.errors import error_responses
from service.registry import Entry, ModelRegistry
from service.schemas import ClassOut, Limits, ModelDetail, ModelList, ModelSummary, ScaleOut

router = APIRouter(prefix="/models", tags=["models"], dependencies=[Depends(require_api_key)])
log = logging.getLogger("histosynth.service")

TRAINING_KEYS = (
    "mode", "preset", "dataset", "held_out", "steps_per_scale", "total_steps", "wall_time_s",
    "device", "created", "perceptual", "metrics",
)
"""Metadata entries that make up the training summary (the rest stays in ``metadata``)."""


@router.get("", response_model=ModelList, responses=error_responses(401), summary="List models")
def list_models(settings: SettingsDep, registry: RegistryDep) -> ModelList:
    """Every model in the store, including ones published since start-up, and the
    server's request limits."""
    _refresh(registry)
    models = [_summary(name, e, registry.default_model) for name, e in registry.entries().items()]
    limits = Limits(
        max_variants=settings.max_variants, max_pixels=settings.max_pixels,
        max_generate_pixels=settings.max_generate_pixels,
        min_mask_side=settings.min_mask_side, max_upload_bytes=settings.max_upload_bytes,
    )
    return ModelList(default_model=registry.default_model, models=models, limits=limits)


@router.get(
    "/{name}", response_model=ModelDetail, responses=error_responses(401, 404, 422, 503),
    summary="Describe a model",
)
def get_model(name: str, registry: RegistryDep) -> ModelDetail:
    """Classes (names, raw values, colours), scales, training summary and digest."""
    pipeline = lookup_model(registry, name)
    entry = registry.entries()[name]
    classes = [
        ClassOut(index=i, name=c.name, values=list(c.values), color=c.color)
        for i, c in enumerate(pipeline.classes.classes)
    ]
    num_scales = pipeline.config.num_scales
    metadata = _jsonable(pipeline.metadata)
    return ModelDetail(
        **_summary(name, entry, registry.default_model).model_dump(),
        description=pipeline.classes.description,
        classes=classes,
        scales=[ScaleOut(n=n, downsample=2**n) for n in range(num_scales)],
        factor=pipeline.config.factor,
        training=_training(metadata),
        metadata=metadata,
    )


def _refresh(registry: ModelRegistry) -> None:
    try:
        registry.refresh()
    except Exception as exc:  # an unreachable store must not hide the loaded models
        log.warning("cannot list the model store: %s", exc)


def _summary(name: str, entry: Entry, default: str) -> ModelSummary:
    pipeline = entry.pipeline
    info = entry.info
    return ModelSummary(
        name=name,
        default=name == default,
        loaded=pipeline is not None,
        sha256=pipeline.sha256 if pipeline is not None else getattr(info, "sha256", None),
        size_bytes=getattr(info, "size", None),
        num_classes=pipeline.classes.num_classes if pipeline is not None else None,
        num_scales=pipeline.config.num_scales if pipeline is not None else None,
        error=entry.error,
    )


def _training(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: metadata[k] for k in TRAINING_KEYS if k in metadata}


def _jsonable(value: Any) -> Any:
    """Metadata as plain JSON (tuples to lists, unknown objects to strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
