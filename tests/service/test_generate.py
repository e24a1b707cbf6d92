"""POST /generate through real HTTP: formats, headers, determinism, encodings."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from tests.service.conftest import (
    MODEL,
    assert_error,
    decode_png,
    generate,
    mask_png,
    mask_values,
    png_bytes,
)

SYNTH_PALETTE = np.array([[0xE6, 0x19, 0x4B], [0x3C, 0xB4, 0x4B], [0x43, 0x63, 0xD8]], np.uint8)


def test_one_png_same_size_as_mask_with_headers(client: httpx.Client) -> None:
    r = generate(client, mask_png(48, 64), seed=7)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert decode_png(r.content).shape == (48, 64, 3)
    assert r.headers["x-histosynth-model"] == MODEL
    assert r.headers["x-histosynth-seed"] == "7"
    assert r.headers["x-histosynth-seeds"] == "7"
    assert len(r.headers["x-histosynth-model-sha256"]) == 64


def test_random_seed_is_reported_and_reproduces(client: httpx.Client) -> None:
    first = generate(client)
    seed = int(first.headers["x-histosynth-seed"])
    again = generate(client, seed=seed)
    assert again.content == first.content


def test_same_seed_same_bytes_different_seed_differs(client: httpx.Client) -> None:
    a, b, c = (generate(client, seed=s).content for s in (3, 3, 4))
    assert a == b
    assert a != c


def test_zip_has_pngs_and_manifest_and_variant_seeds_reproduce(client: httpx.Client) -> None:
    r = generate(client, n=3, seed=10)  # format defaults to zip for n > 1
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["x-histosynth-seeds"] == "10,11,12"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        files = {v["file"]: v["seed"] for v in manifest["variants"]}
        assert files == {"variant_000.png": 10, "variant_001.png": 11, "variant_002.png": 12}
        second = zf.read("variant_001.png")
    assert manifest["model"] == MODEL and manifest["seed"] == 10
    assert (manifest["width"], manifest["height"]) == (64, 48)
    assert generate(client, seed=11).content == second


def test_json_format_base64_pngs_with_seeds(client: httpx.Client) -> None:
    r = generate(client, n=2, seed=20, noise=0.5, format="json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == MODEL and body["seed"] == 20 and body["noise"] == 0.5
    assert [im["seed"] for im in body["images"]] == [20, 21]
    img = decode_png(base64.b64decode(body["images"][0]["png_base64"]))
    assert img.shape == (48, 64, 3)


def test_png_with_several_variants_is_refused(client: httpx.Client) -> None:
    r = generate(client, n=2, format="png")
    assert_error(r, 400, "format_needs_one_image", "format=zip", "format=json")


def test_colour_and_index_masks(client: httpx.Client) -> None:
    values = mask_values()
    colour = generate(client, png_bytes(SYNTH_PALETTE[values]), seed=1)
    raw = generate(client, png_bytes(values), seed=1)
    index = generate(client, png_bytes(values), seed=1, encoding="index")
    assert colour.status_code == raw.status_code == index.status_code == 200
    assert colour.content == raw.content == index.content


def test_burst_of_requests_queues_and_succeeds(client: httpx.Client, server) -> None:
    def one(seed: int) -> int:
        with server.client() as c:
            return generate(c, seed=seed).status_code

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(one, range(6))) == [200] * 6
