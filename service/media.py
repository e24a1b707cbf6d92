"""Uploads in, images out: size and pixel guards, mask/image decoding, PNG/ZIP/JSON encoding.

Every problem with an uploaded file becomes an :class:`ApiError` naming it (4xx); the
decoding functions here are synchronous and run in a worker thread.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import zipfile
from collections.abc import Callable, Sequence

import numpy as np
from fastapi import UploadFile
from PIL import Image, UnidentifiedImageError

from model.training.data import read_image, read_mask
from service.errors import ApiError
from service.limits import too_large
from service.schemas import GeneratedImage, GenerationInfo, GenerationManifest, ManifestEntry

log = logging.getLogger("histosynth.service")

PNG_COMPRESS_LEVEL = 1
"""Fast PNG compression: encoding time matters more than a few percent of size here."""


async def read_upload(upload: UploadFile, max_bytes: int, field: str) -> bytes:
    """All bytes of an uploaded file (413 past ``max_bytes``, 400 when empty)."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    if not data:
        raise ApiError(400, "empty_file", f"the {field} file {upload.filename!r} is empty")
    return data


def check_pixels(data: bytes, max_pixels: int, field: str, filename: str | None) -> None:
    """413 when the image header declares more than ``max_pixels`` (decompression bombs).

    Only the header is read; undecodable files pass and fail later with a clear 400.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError as exc:  # far past Pillow's own limit
        raise ApiError(
            413,
            "too_many_pixels",
            f"the {field} {filename!r} is too large to decode safely ({exc}); "
            f"the limit is {max_pixels} pixels",
            {"max_pixels": max_pixels},
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return
    if width * height > max_pixels:
        raise ApiError(
            413,
            "too_many_pixels",
            f"the {field} {filename!r} has {width}x{height} = {width * height} pixels, more than "
            f"the limit of {max_pixels}; send a smaller image or raise MAX_PIXELS",
            {"width": width, "height": height, "max_pixels": max_pixels},
        )


def decode_mask_file(data: bytes, filename: str | None, max_pixels: int) -> np.ndarray:
    """Raw mask array: (H, W) integer values or (H, W, 3) RGB colours (400 on a bad file)."""
    return _decode(read_mask, data, filename, max_pixels, "mask")


def decode_image_file(data: bytes, filename: str | None, max_pixels: int) -> np.ndarray:
    """RGB image (H, W, 3) uint8 (400 on a bad file)."""
    return _decode(read_image, data, filename, max_pixels, "image")


def _decode(
    reader: Callable[..., np.ndarray], data: bytes, filename: str | None, max_pixels: int, field: str
) -> np.ndarray:
    check_pixels(data, max_pixels, field, filename)
    try:
        return reader(data, max_pixels=max_pixels, name=repr(filename or field))
    except Exception as exc:  # PIL raises many types on corrupt input
        raise _bad_image(field, filename, exc) from None


def _bad_image(field: str, filename: str | None, exc: Exception) -> ApiError:
    log.debug("cannot decode %s %r: %r", field, filename, exc)
    message = str(exc) if isinstance(exc, ValueError) else f"cannot read {filename!r}: {exc}"
    if "pixels" in message and "limit" in message:
        return ApiError(413, "too_many_pixels", f"{field}: {message}")
    return ApiError(400, "invalid_image", f"{field}: {message}")


def check_min_side(shape: Sequence[int], min_side: int, field: str) -> None:
    """400 when the image is smaller than ``min_side`` on either side."""
    height, width = int(shape[0]), int(shape[1])
    if min(height, width) < min_side:
        raise ApiError(
            400,
            "image_too_small",
            f"the {field} is {width}x{height}; both sides must be at least {min_side} pixels",
            {"width": width, "height": height, "min_side": min_side},
        )


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8, (H, W) uint8 or (H, W) uint16 array."""
    if array.dtype == np.uint16:
        img = Image.fromarray(array.astype(np.int32)).convert("I;16")
    else:
        img = Image.fromarray(array)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def variant_name(i: int) -> str:
    """File name of variant ``i`` inside a ZIP."""
    return f"variant_{i:03d}.png"


def build_zip(info: GenerationInfo, pngs: Sequence[bytes], seeds: Sequence[int]) -> bytes:
    """ZIP of ``variant_XXX.png`` files plus ``manifest.json`` (:class:`GenerationManifest`)."""
    entries = [ManifestEntry(file=variant_name(i), seed=s) for i, s in enumerate(seeds)]
    manifest = GenerationManifest(**info.model_dump(), variants=entries)
    buf = io.BytesIO()
    # PNGs are already compressed: store them.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for entry, png in zip(entries, pngs, strict=True):
            zf.writestr(entry.file, png)
        zf.writestr("manifest.json", json.dumps(manifest.model_dump(), indent=2))
    return buf.getvalue()


def build_images(pngs: Sequence[bytes], seeds: Sequence[int]) -> list[GeneratedImage]:
    """Base64 PNGs with their seeds for ``format=json``."""
    return [
        GeneratedImage(seed=s, png_base64=base64.b64encode(p).decode("ascii"))
        for p, s in zip(pngs, seeds, strict=True)
    ]
