"""POST /images/convert: read an H&E image the way /segment reads it, return it as a PNG."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, File, UploadFile
from fastapi.responses import Response

from service.deps import SettingsDep, require_api_key
from service.media import decode_image_file, encode_png, png_responses, read_upload

router = APIRouter(prefix="/images", tags=["images"], dependencies=[Depends(require_api_key)])

_RESPONSES = png_responses(
    "The image as an 8-bit RGB PNG of the same size: the pixels /segment reads from the upload "
    "(greyscale becomes RGB; a translucent alpha channel or a CMYK image is a 400, as for /segment).",
    400, 401, 413, 422,
)


@router.post("/convert", response_class=Response, responses=_RESPONSES, summary="Convert an image")
async def convert_image(
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="H&E image: PNG, JPEG, TIFF or BMP, as /segment accepts it.")],
) -> Response:
    """Decode an image exactly as /segment would and return it as a PNG, e.g. a TIFF that a
    browser cannot display. The studio page shows uploaded TIFF tiles through this. Same
    size and pixel limits as /segment; no model is involved."""
    data = await read_upload(image, settings.max_upload_bytes, "image")
    job = partial(run_image_conversion, data, image.filename, settings.max_pixels)
    return Response(await anyio.to_thread.run_sync(job), media_type="image/png")


def run_image_conversion(data: bytes, filename: str | None, max_pixels: int) -> bytes:
    """Decode and encode (runs in a worker thread)."""
    return encode_png(decode_image_file(data, filename, max_pixels))
