"""Every bad input is a 4xx in the one JSON error shape, naming the problem; never a 500."""

from __future__ import annotations

import io
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import LIMITS, MODEL, assert_error, generate, mask_png, png_bytes


def _multipart(mask: bytes) -> tuple[bytes, str]:
    boundary = "histosynth-test-boundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"mask\"; filename=\"m.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode() + mask + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_upload_too_large_by_content_length(client: httpx.Client) -> None:
    big = b"\0" * (LIMITS["max_upload_bytes"] + 1)
    r = generate(client, big)
    assert_error(r, 413, "upload_too_large", str(LIMITS["max_upload_bytes"]))


def test_upload_too_large_while_streaming(client: httpx.Client) -> None:
    body, ctype = _multipart(b"\0" * (LIMITS["max_upload_bytes"] + 10))

    def chunks():  # no Content-Length: chunked transfer encoding
        for i in range(0, len(body), 16384):
            yield body[i:i + 16384]

    r = client.post("/generate", content=chunks(), headers={"content-type": ctype})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "upload_too_large")


def test_too_many_pixels(client: httpx.Client) -> None:
    r = generate(client, png_bytes(np.zeros((300, 300), np.uint8)))
    err = assert_error(r, 413, "too_many_pixels", "300x300", str(LIMITS["max_pixels"]))
    assert err["details"]["max_pixels"] == LIMITS["max_pixels"]


def test_decompression_bomb_header_is_refused_before_decoding(client: httpx.Client) -> None:
    # a small PNG whose header claims 50000x50000 (with a valid CRC): only the header is read
    data = bytearray(png_bytes(np.zeros((20, 20), np.uint8)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = (50000).to_bytes(4, "big") + (50000).to_bytes(4, "big")
    data[ihdr + 17: ihdr + 21] = zlib.crc32(bytes(data[ihdr: ihdr + 17])).to_bytes(4, "big")
    r = generate(client, bytes(data))
    assert_error(r, 413, "too_many_pixels", "2500000000 pixels", str(LIMITS["max_pixels"]))


def test_mask_smaller_than_min_side(client: httpx.Client) -> None:
    r = generate(client, mask_png(8, 64))
    assert_error(r, 400, "image_too_small", "64x8", str(LIMITS["min_mask_side"]))


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"n": 0}, "n:"),
        ({"n": LIMITS["max_variants"] + 1}, f"at most {LIMITS['max_variants']}"),
        ({"noise": -0.5}, "noise:"),
        ({"noise": 1000}, "noise:"),
        ({"seed": -1}, "seed:"),
        ({"n": "many"}, "n:"),
        ({"format": "gif"}, "format:"),
        ({"encoding": "rgb"}, "encoding:"),
    ],
)
def test_out_of_range_fields_are_422(client: httpx.Client, fields: dict, needle: str) -> None:
    assert_error(generate(client, **fields), 422, "validation_error", needle)


def test_missing_mask_is_422(client: httpx.Client) -> None:
    r = client.post("/generate", data={"n": "1"})
    assert_error(r, 422, "validation_error", "mask")


def test_unknown_model_lists_known_models(client: httpx.Client) -> None:
    r = generate(client, model="no-such-model")
    err = assert_error(r, 404, "unknown_model", "no-such-model", MODEL)
    assert MODEL in err["details"]["known_models"]


def test_unknown_mask_values_are_listed(client: httpx.Client) -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[:4, :4] = 7
    mask[-4:, -4:] = 9
    err = assert_error(generate(client, png_bytes(mask)), 400, "invalid_mask", "[7, 9]")
    assert [c["name"] for c in err["details"]["classes"]] == ["stroma", "benign", "tumour"]


def test_unknown_colours_are_listed(client: httpx.Client) -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:] = (0x12, 0x34, 0x56)
    assert_error(generate(client, png_bytes(rgb)), 400, "invalid_mask", "#123456")


def test_index_out_of_range(client: httpx.Client) -> None:
    r = generate(client, png_bytes(np.full((32, 32), 5, np.uint8)), encoding="index")
    assert_error(r, 400, "invalid_mask", "[5]")


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"this is not an image at all", "cannot read"),
        (png_bytes(np.random.default_rng(0).integers(0, 3, (64, 64), np.uint8))[:400],
         "cannot read"),
    ],
    ids=["text", "truncated-png"],
)
def test_corrupt_files(client: httpx.Client, payload: bytes, needle: str) -> None:
    assert_error(generate(client, payload), 400, "invalid_image", needle)


def test_empty_file(client: httpx.Client) -> None:
    assert_error(generate(client, b""), 400, "empty_file")


def test_wrong_image_mode(client: httpx.Client) -> None:
    buf = io.BytesIO()
    Image.new("CMYK", (32, 32)).save(buf, format="TIFF")
    assert_error(generate(client, buf.getvalue(), "m.tif"), 400, "invalid_image", "CMYK")


def test_transparent_colour_mask(client: httpx.Client) -> None:
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = (0xE6, 0x19, 0x4B)
    assert_error(generate(client, png_bytes(rgba)), 400, "invalid_mask", "alpha")


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert_error(client.get("/nope"), 404, "not_found", "/nope")
    assert_error(client.get("/generate"), 405, "method_not_allowed")


def test_job_routes_503_when_redis_is_down_but_generate_works(client: httpx.Client) -> None:
    assert_error(client.get("/jobs"), 503, "redis_unavailable", "Redis")
    r = client.post("/jobs/augment", json={"source": "training", "output": "out"})
    assert_error(r, 503, "redis_unavailable")
    assert generate(client).status_code == 200


def test_many_unknown_mask_values_give_a_short_error(client: httpx.Client) -> None:
    """A 16-bit mask with thousands of distinct values: a capped list and how many more."""
    values = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) + 100
    buf = io.BytesIO()
    Image.fromarray(values.astype(np.int32)).convert("I;16").save(buf, format="PNG")
    r = generate(client, buf.getvalue())
    err = assert_error(r, 400, "invalid_mask", "[100, 101,", "4088 more")
    assert len(r.content) < 4000, len(r.content)
    assert len(err["details"]["unknown_values"]) <= 8 and err["details"]["unknown_count"] == 4096


def test_seed_bounds_in_the_schema_are_what_is_accepted(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    form = spec["components"]["schemas"]["Body_generate_generate_post"]["properties"]["seed"]
    maximum = next(s["maximum"] for s in form["anyOf"] if "maximum" in s)
    r = generate(client, seed=maximum)
    assert r.status_code == 200, r.text
    assert r.headers["x-histosynth-seed"] == str(maximum)
    err = assert_error(generate(client, seed=maximum + 1), 422, "validation_error", "seed")
    assert err["details"] and err["details"][0]["field"] == "seed"
    # n variants use seeds seed..seed+n-1: all must stay within the maximum
    err = assert_error(generate(client, seed=maximum, n=2, format="zip"), 422,
                       "validation_error", "seed")
    assert err["details"][0]["field"] == "seed"
    augment = spec["components"]["schemas"]["AugmentJobRequest"]["properties"]["seed"]
    bound = next(s["maximum"] for s in augment["anyOf"] if "maximum" in s)
    assert isinstance(maximum, int) and isinstance(bound, int) and bound == 2**53 - 1


def test_cmyk_jpeg_is_refused_by_segment(client: httpx.Client) -> None:
    buf = io.BytesIO()
    Image.new("CMYK", (48, 48), (10, 200, 30, 0)).save(buf, format="JPEG")
    r = client.post("/segment", files={"image": ("he.jpg", buf.getvalue(), "image/jpeg")})
    assert_error(r, 400, "invalid_image", "CMYK")


def test_options_lists_every_method_of_a_path(client: httpx.Client) -> None:
    r = client.options("/jobs/some-id")
    assert r.status_code in (200, 204), r.text
    assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "DELETE"}
    r = client.put("/jobs/some-id")
    err = assert_error(r, 405, "method_not_allowed")
    assert {"GET", "DELETE"} <= set(r.headers["allow"].replace(" ", "").split(","))
    assert err is not None
