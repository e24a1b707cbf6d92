"""GET /jobs/{id}/pairs[/{index}/image|mask]: the pairs an augmentation job has written.

The output location is the one the job was queued with, opened with the same checks as
at submission (allowed buckets, data root). Pairs appear as soon as they are committed,
so a running job's first pairs can be looked at before it finishes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from model.imageio import read_mask
from service.deps import RedisDep, RegistryDep, SettingsDep, lookup_model, require_api_key
from service.errors import ApiError, error_responses
from service.media import encode_labels, png_responses
from service.routes.jobs import JobId, get_job, open_location
from service.schemas import JobPairs, PairOut, SegmentFormat
from worker import queue
from worker.augment import read_records, record_key
from worker.storage import Storage, StorageError

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_api_key)])

MAX_PAIRS = 64
"""Most pair records one GET /jobs/{id}/pairs returns."""

PairIndex = Annotated[int, Path(ge=0, description="Pair index (as in the manifest).")]


@router.get(
    "/{job_id}/pairs", response_model=JobPairs,
    responses=error_responses(400, 401, 403, 404, 422, 503), summary="First pairs of a job",
)
def list_pairs(
    job_id: JobId, conn: RedisDep, settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAIRS, description="Most pairs to return.")] = 4,
) -> JobPairs:
    """The first ``limit`` image/mask pairs an augmentation job has written, in index order,
    with API paths to their PNGs; ``written`` counts the pairs committed so far."""
    out = _output(conn, job_id, settings)
    with _storage_errors():
        written, records = read_records(out, limit)
    base = f"/jobs/{job_id}/pairs"
    pairs = [
        PairOut(**r, image_url=f"{base}/{r['index']}/image", mask_url=f"{base}/{r['index']}/mask")
        for r in records
    ]
    return JobPairs(job_id=job_id, output=out.uri, written=written, pairs=pairs)


@router.get(
    "/{job_id}/pairs/{index}/image", response_class=Response,
    responses=png_responses("The image (PNG).", 400, 401, 403, 404, 422, 503),
    summary="A pair's image",
)
def pair_image(job_id: JobId, index: PairIndex, conn: RedisDep, settings: SettingsDep) -> Response:
    """The generated H&E image of pair ``index`` (PNG)."""
    out = _output(conn, job_id, settings)
    _, png = _read(out, job_id, index, "image")
    return Response(png, media_type="image/png")


@router.get(
    "/{job_id}/pairs/{index}/mask", response_class=Response,
    responses=png_responses("The mask (PNG).", 400, 401, 403, 404, 422, 503),
    summary="A pair's mask",
)
def pair_mask(
    job_id: JobId, index: PairIndex, conn: RedisDep, settings: SettingsDep, registry: RegistryDep,
    format: Annotated[
        SegmentFormat, Query(description="values (as written), index or color.")
    ] = "values",
) -> Response:
    """The mask of pair ``index`` as written (raw values), or as class indices or colours."""
    out = _output(conn, job_id, settings)
    record, png = _read(out, job_id, index, "mask")
    if format != "values":
        classes = lookup_model(registry, str(record["model"])).classes
        labels = classes.decode(read_mask(png, name=record["mask"]), "values")  # (H, W)
        png = encode_labels(classes, labels, format)
    return Response(png, media_type="image/png")


def _output(conn: RedisDep, job_id: str, settings: SettingsDep) -> Storage:
    """The output location of augmentation job ``job_id`` (404 unknown, 400 not augment)."""
    info = get_job(job_id, conn)
    if info.kind != "augment":
        raise ApiError(
            400, "not_an_augment_job",
            f"job {job_id} is a {info.kind} job; only augmentation jobs write pairs",
            {"kind": info.kind},
        )
    return open_location(str(queue.job_payload(conn, job_id).get("output", "")), settings, "output")


def _record(out: Storage, job_id: str, index: int) -> dict[str, Any]:
    """Pair ``index``'s record (404 while it is not written)."""
    try:
        with _storage_errors():
            record: dict[str, Any] = json.loads(out.read_bytes(record_key(index)))
    except FileNotFoundError:
        raise ApiError(
            404, "unknown_pair", f"job {job_id} has not written pair {index} (yet)",
            {"index": index},
        ) from None
    return record


def _read(out: Storage, job_id: str, index: int, field: str) -> tuple[dict[str, Any], bytes]:
    """Pair ``index``'s record and the bytes of its ``image`` or ``mask``."""
    record = _record(out, job_id, index)
    key = str(record[field])
    try:
        with _storage_errors():
            return record, out.read_bytes(key)
    except FileNotFoundError:
        raise ApiError(404, "unknown_pair", f"{out.uri_for(key)} is gone", {"index": index}) from None


@contextmanager
def _storage_errors() -> Iterator[None]:
    """An unreachable output location is a 503 naming it, not a 500."""
    try:
        yield
    except StorageError as exc:
        raise ApiError(503, "storage_unavailable", str(exc)) from None
