"""Bulk jobs on the RQ queues: POST /jobs/augment, POST /jobs/train, GET/DELETE /jobs.

Requests are checked before anything is queued (model exists, class names known,
locations allowed), so a bad request fails now with a 4xx instead of later in a worker.
Redis unreachable: 503 (``redis_unavailable``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, status
from fastapi import Path as PathParam

from service.deps import RedisDep, RegistryDep, SettingsDep, lookup_model, require_api_key
from service.errors import ApiError, error_responses
from worker import queue
from worker.augment import source_location
from worker.schemas import AugmentJobRequest, JobInfo, TrainJobRequest
from worker.settings import Settings
from worker.storage import LocalStorage, Storage, check_output_location, open_storage

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_api_key)])

TRAINING_SOURCE = "training"
"""``source`` value meaning the masks of the dataset the model was trained on."""

_FORBIDDEN_HINTS = (
    "not allowed", "outside the data root", "contains '..'", "leaves", "data root itself",
    "model store",
)
T = TypeVar("T")

JobId = Annotated[
    str,
    PathParam(pattern=r"^[A-Za-z0-9_-]+$", max_length=128,
              description="Job id as returned on submission (letters, digits, '_', '-')."),
]
_DONE = ("finished", "failed")


@router.post(
    "/augment", response_model=JobInfo, status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(400, 401, 403, 404, 422, 503), summary="Queue an augmentation job",
)
def submit_augment(
    req: AugmentJobRequest, conn: RedisDep, settings: SettingsDep, registry: RegistryDep
) -> JobInfo:
    """Generate image/mask pairs (plus ``manifest.jsonl``) from a set of masks into ``output``."""
    name = req.model or settings.default_model
    pipeline = lookup_model(registry, name)
    _check_relabel(req.relabel, pipeline.classes.names)
    _checked(check_output_location, open_location(req.output, settings, "output"), settings,
             field="output")
    if req.source == TRAINING_SOURCE:
        _checked(source_location, req.source, settings, pipeline.metadata, False, field="source")
    else:
        _must_exist(open_location(req.source, settings, "source"), "source", req.source)
    return queue.enqueue_augment(conn, req.model_copy(update={"model": name}), settings)


@router.post(
    "/train", response_model=JobInfo, status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(400, 401, 403, 422, 503), summary="Queue a training job",
)
def submit_train(req: TrainJobRequest, conn: RedisDep, settings: SettingsDep) -> JobInfo:
    """Train a model; when it finishes it is published and /generate serves it (no restart)."""
    _must_exist(open_location(req.dataset, settings, "dataset"), "dataset", req.dataset)
    return queue.enqueue_train(conn, req, settings)


@router.get(
    "", response_model=list[JobInfo], responses=error_responses(401, 503), summary="List jobs"
)
def list_jobs(conn: RedisDep) -> list[JobInfo]:
    """Jobs of both queues in every state, newest first."""
    return queue.list_jobs(conn)


@router.get(
    "/{job_id}", response_model=JobInfo, responses=error_responses(401, 404, 422, 503),
    summary="Job status",
)
def get_job(job_id: JobId, conn: RedisDep) -> JobInfo:
    """Status, progress (scale, step, losses, ETA), result and error of one job."""
    return _fetch(conn, job_id)


@router.delete(
    "/{job_id}", response_model=JobInfo, responses=error_responses(401, 404, 409, 422, 503),
    summary="Cancel a job",
)
def cancel_job(job_id: JobId, conn: RedisDep, settings: SettingsDep) -> JobInfo:
    """A queued job never runs; a running training job checkpoints and stops."""
    info = _fetch(conn, job_id)
    if info.status in _DONE:
        raise ApiError(
            409, "job_finished", f"job {job_id} already {info.status}; nothing to cancel",
            {"status": info.status},
        )
    return queue.cancel_job(conn, job_id, settings)


def _fetch(conn: RedisDep, job_id: str) -> JobInfo:
    try:
        return queue.get_job(conn, job_id)
    except KeyError:
        raise ApiError(404, "unknown_job", f"unknown job {job_id!r} (or it has expired)") from None


def open_location(uri: str, settings: Settings, field: str) -> Storage:
    """Open a job's input/output location: 403 outside allowed buckets / data root, 400 if bad."""
    return _checked(open_storage, uri, settings, field=field)


def _checked(check: Callable[..., T], *args: Any, field: str) -> T:
    """``check(*args)``, its ValueError a 403 (location not allowed) or 400 naming ``field``."""
    try:
        return check(*args)
    except ValueError as exc:
        message = f"{field}: {exc}"
        if any(hint in str(exc) for hint in _FORBIDDEN_HINTS):
            raise ApiError(403, "location_not_allowed", message, {"field": field}) from None
        raise ApiError(400, "invalid_location", message, {"field": field}) from None


def _must_exist(storage: Storage, field: str, uri: str) -> None:
    if isinstance(storage, LocalStorage) and not Path(storage.root).is_dir():
        raise ApiError(400, "not_found", f"{field}: no folder {uri!r} under the data root",
                       {"field": field, "path": str(storage.root)})


def _check_relabel(mapping: dict[str, str] | None, names: list[str]) -> None:
    unknown = sorted({n for pair in (mapping or {}).items() for n in pair} - set(names))
    if unknown:
        raise ApiError(
            400, "unknown_classes",
            f"relabel names classes {unknown} that the model does not have; classes: {names}",
            {"unknown": unknown, "classes": names},
        )
