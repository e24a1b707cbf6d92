"""POST /segment: H&E image in, class map out as a PNG."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, File, UploadFile
from fastapi.responses import Response

from model.pipeline import Pipeline
from service.deps import LimiterDep, RegistryDep, SettingsDep, require_api_key, resolve_model
from service.errors import ApiError
from service.media import (
    check_min_side,
    decode_image_file,
    encode_labels,
    png_responses,
    read_upload,
)
from service.schemas import ClassMapForm, ModelForm, SegmentFormat

router = APIRouter(tags=["segment"], dependencies=[Depends(require_api_key)])

_RESPONSES = png_responses(
    "The class map as a PNG the size of the image: `index` (8-bit class indices), `values` "
    "(the dataset's raw mask values, accepted back by /generate) or `color` (RGB palette). "
    "`X-HistoSynth-Classes` lists class names in index order.",
    400, 401, 404, 413, 422, 503,
)


@router.post("/segment", response_class=Response, responses=_RESPONSES, summary="Segment")
async def segment(
    settings: SettingsDep,
    registry: RegistryDep,
    limiter: LimiterDep,
    image: Annotated[UploadFile, File(description="H&E image: PNG, JPEG, TIFF or BMP.")],
    format: ClassMapForm = "color",
    model: ModelForm = None,
) -> Response:
    """Predict the class of every pixel with the model's segmenter."""
    data = await read_upload(image, settings.max_upload_bytes, "image")
    name = model or settings.default_model
    pipeline = await resolve_model(registry, name)
    job = partial(
        run_segmentation, pipeline, data, image.filename, format,
        settings.min_mask_side, settings.max_pixels,
    )
    png = await anyio.to_thread.run_sync(job, limiter=limiter)
    headers = {
        "X-HistoSynth-Model": name,
        "X-HistoSynth-Model-SHA256": pipeline.sha256,
        "X-HistoSynth-Classes": ",".join(pipeline.classes.names),
    }
    return Response(png, media_type="image/png", headers=headers)


def run_segmentation(
    pipeline: Pipeline,
    data: bytes,
    filename: str | None,
    fmt: SegmentFormat,
    min_side: int,
    max_pixels: int,
) -> bytes:
    """Decode the image, segment, encode the class map (runs in a worker thread)."""
    image = decode_image_file(data, filename, max_pixels)  # (H, W, 3) uint8
    check_min_side(image.shape, min_side, "image")
    try:
        labels = pipeline.segment(image)  # (H, W) int64
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    return encode_labels(pipeline.classes, labels, fmt)
