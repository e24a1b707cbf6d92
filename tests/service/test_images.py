"""POST /images/convert: an upload read as /segment reads it, returned as a PNG."""

from __future__ import annotations

import httpx
import numpy as np

from tests.service.conftest import assert_error, decode_png, png_bytes


def convert(client: httpx.Client, data: bytes, name: str = "tile.tif") -> httpx.Response:
    return client.post("/images/convert", files={"image": (name, data, "application/octet-stream")})


def test_a_tiff_comes_back_as_the_same_pixels_in_a_png(client: httpx.Client) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    r = convert(client, png_bytes(rgb, fmt="TIFF"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert np.array_equal(decode_png(r.content), rgb)


def test_greyscale_becomes_rgb(client: httpx.Client) -> None:
    grey = np.arange(48 * 48, dtype=np.uint32).reshape(48, 48).astype(np.uint8)
    out = decode_png(convert(client, png_bytes(grey), "g.png").content)
    assert out.shape == (48, 48, 3) and np.array_equal(out[..., 1], grey)


def test_bad_uploads_name_the_problem(client: httpx.Client) -> None:
    assert_error(convert(client, b"not an image", "x.tif"), 400, "invalid_image", "image")
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent: /segment refuses it too
    assert_error(convert(client, png_bytes(rgba), "a.png"), 400, "invalid_image", "image")
    r = client.post("/images/convert", data={"x": "1"})
    assert r.status_code == 422
