"""POST /masks/convert: read a mask the way /generate reads it, return it in another encoding."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import Response

from model.classes import MaskEncoding
from model.pipeline import Pipeline
from service.deps import RegistryDep, SettingsDep, require_api_key, resolve_model
from service.media import decode_mask_file, encode_labels, png_responses, read_upload
from service.routes.generate import decode_classes
from service.schemas import ClassMapForm, ModelForm, SegmentFormat

router = APIRouter(prefix="/masks", tags=["masks"], dependencies=[Depends(require_api_key)])

_RESPONSES = png_responses(
    "The mask as a PNG of the same size: `index` (8-bit class indices), `values` (the model's "
    "raw mask values) or `color` (RGB in the class colours). `X-HistoSynth-Classes` lists "
    "class names in index order.",
    400, 401, 404, 413, 422, 503,
)


@router.post("/convert", response_class=Response, responses=_RESPONSES, summary="Convert a mask")
async def convert_mask(
    settings: SettingsDep,
    registry: RegistryDep,
    mask: Annotated[
        UploadFile,
        File(description="Semantic mask: PNG, TIFF or BMP, as /generate accepts it."),
    ],
    encoding: Annotated[
        MaskEncoding,
        Form(description="How to read the mask: auto (2-D = raw values, RGB = colours), "
             "values, index or color."),
    ] = "auto",
    format: ClassMapForm = "color",
    model: ModelForm = None,
) -> Response:
    """Decode a mask with the model's class table, exactly as /generate would, and return it
    as class indices, raw values or colours (an unknown value or colour is a 400 listing the
    model's classes). The studio page loads mask files onto its canvas through this."""
    data = await read_upload(mask, settings.max_upload_bytes, "mask")
    name = model or settings.default_model
    pipeline = await resolve_model(registry, name)
    job = partial(
        run_conversion, name, pipeline, data, mask.filename, encoding, format,
        settings.max_pixels,
    )
    png = await anyio.to_thread.run_sync(job)
    headers = {"X-HistoSynth-Model": name, "X-HistoSynth-Classes": ",".join(pipeline.classes.names)}
    return Response(png, media_type="image/png", headers=headers)


def run_conversion(
    name: str,
    pipeline: Pipeline,
    data: bytes,
    filename: str | None,
    encoding: MaskEncoding,
    fmt: SegmentFormat,
    max_pixels: int,
) -> bytes:
    """Decode, map to classes, encode (runs in a worker thread)."""
    raw = decode_mask_file(data, filename, max_pixels)
    labels = decode_classes(name, pipeline, raw, encoding)  # (H, W) int64
    return encode_labels(pipeline.classes, labels, fmt)
