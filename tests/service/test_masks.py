"""POST /masks/convert: a mask read as /generate reads it, returned in another encoding."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.conftest import assert_error, decode_png, mask_values, png_bytes

PALETTE = np.array([[0xE6, 0x19, 0x4B], [0x3C, 0xB4, 0x4B], [0x43, 0x63, 0xD8]], np.uint8)


def convert(client: httpx.Client, data: bytes, **fields: Any) -> httpx.Response:
    form = {k: str(v) for k, v in fields.items()}
    return client.post("/masks/convert", files={"mask": ("m.png", data, "image/png")}, data=form)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, lambda v: PALETTE[v]),  # default: colours
        ({"format": "index"}, lambda v: v),
        ({"format": "values"}, lambda v: v),  # the tiny model's values are its indices
    ],
)
def test_values_to_every_format(client: httpx.Client, fields: dict, expected: Any) -> None:
    values = mask_values()
    r = convert(client, png_bytes(values), **fields)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-histosynth-classes"] == "stroma,benign,tumour"
    assert np.array_equal(decode_png(r.content), expected(values))


def test_colours_back_to_values(client: httpx.Client) -> None:
    values = mask_values()
    r = convert(client, png_bytes(PALETTE[values]), encoding="color", format="values")
    assert r.status_code == 200, r.text
    assert np.array_equal(decode_png(r.content), values)


def test_palette_mode_reads_indices_not_colours(client: httpx.Client) -> None:
    values = mask_values()
    r = convert(client, png_bytes(values, mode="P"), format="index")
    assert np.array_equal(decode_png(r.content), values)


def test_bad_masks_name_the_problem(client: httpx.Client) -> None:
    err = assert_error(convert(client, png_bytes(np.full((20, 20), 9, np.uint8))), 400,
                       "invalid_mask", "[9]")
    assert [c["name"] for c in err["details"]["classes"]] == ["stroma", "benign", "tumour"]
    assert_error(convert(client, b"not an image"), 400, "invalid_image", "mask")
    assert_error(convert(client, png_bytes(mask_values()), format="jpeg"), 422,
                 "validation_error", "format")
    assert_error(convert(client, png_bytes(mask_values()), model="nope"), 404, "unknown_model")
