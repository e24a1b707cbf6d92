"""Reading images and masks safely: PNG, JPEG, TIFF, BMP from a path or raw bytes.

Every failure (corrupt file, unsupported mode, too many pixels) is a ValueError naming the
file, so the CLI and the API can show it as is.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

Source = str | Path | bytes

IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N", "RGB", "RGBA")
_OTHER_COLOUR_SPACES = ("CMYK", "YCbCr", "LAB", "HSV")
"""Image modes that a plain conversion would turn into wrong RGB colours (no colour profile)."""


def _load_pil(src: Source, max_pixels: int | None, name: str | None) -> tuple[Image.Image, str]:
    """Open, size-check and decode an image; every failure is a ValueError naming it."""
    if name is None:
        name = "<bytes>" if isinstance(src, bytes | bytearray) else str(src)
    with warnings.catch_warnings():
        # With an explicit limit we check ourselves; otherwise Pillow's default limit applies.
        warnings.simplefilter("ignore" if max_pixels else "error", Image.DecompressionBombWarning)
        try:
            data = bytes(src) if isinstance(src, bytes | bytearray) else Path(src).read_bytes()
            im = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            _check_pixels(im.size, name, max_pixels)
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            limit = f"; the limit is {max_pixels} pixels" if max_pixels else ""
            raise ValueError(f"{name} is too large to decode safely: {exc}{limit}") from None
        except UnidentifiedImageError:
            formats = ", ".join(IMAGE_FORMATS[:-1]) + " or " + IMAGE_FORMATS[-1]
            raise ValueError(f"cannot read {name} as an image: not a {formats} file") from None
        except (OSError, SyntaxError, EOFError, MemoryError) as exc:
            raise ValueError(f"cannot read {name} as an image: {exc}") from None
    return im, name


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    w, h = size
    if max_pixels is not None and w * h > max_pixels:
        raise ValueError(
            f"{name} is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels} pixels"
        )


def read_image(src: Source, max_pixels: int | None = None, name: str | None = None) -> np.ndarray:
    """Read a PNG, JPEG, TIFF or BMP image as RGB.

    Args:
        src: a file path or the file's raw bytes.
        max_pixels: refuse images with more pixels (checked from the header, before
            decoding); None keeps Pillow's own decompression-bomb limit.
        name: how errors call the image (default: the path, or ``<bytes>``).

    Returns:
        uint8 (H, W, 3). Grayscale becomes RGB; an alpha channel must be fully opaque;
        CMYK and other colour spaces are refused (a conversion without their colour
        profile would change the stain colours).
    """
    im, name = _load_pil(src, max_pixels, name)
    if im.mode in _OTHER_COLOUR_SPACES:
        raise ValueError(
            f"{name} is a {im.mode} image; convert it to RGB (with its colour profile) first"
        )
    if im.mode.startswith("I;16"):
        gray = (np.array(im).astype(np.uint16) >> 8).astype(np.uint8)  # (H, W)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.array(im.convert("RGBA"))  # (H, W, 4)
        if not np.all(rgba[..., 3] == 255):
            raise ValueError(f"{name} has transparent pixels; save it without an alpha channel")
        return np.ascontiguousarray(rgba[..., :3])
    return np.array(im.convert("RGB"))


def read_mask(src: Source, max_pixels: int | None = None, name: str | None = None) -> np.ndarray:
    """Read a mask's raw pixel values (decode them with :meth:`ClassTable.decode`).

    Args:
        src: a file path or the file's raw bytes (PNG, JPEG, TIFF, BMP).
        max_pixels: refuse masks with more pixels, checked before decoding.
        name: how errors call the mask.

    Returns:
        (H, W) integers for modes 1 (0/1), L, P (palette indices), I and I;16 (16-bit);
        (H, W, 3|4) uint8 colours for RGB/RGBA.
    """
    im, name = _load_pil(src, max_pixels, name)
    if im.mode not in _MASK_MODES:
        raise ValueError(
            f"mask {name} has image mode {im.mode}; save masks as 8- or 16-bit grayscale, "
            "palette or RGB"
        )
    arr = np.array(im)
    if im.mode == "1":
        return arr.astype(np.uint8)
    if im.mode.startswith("I;16"):
        return arr.astype(np.uint16)
    return arr
