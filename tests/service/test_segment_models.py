"""POST /segment and GET /models through real HTTP, including models published live."""

from __future__ import annotations

import shutil

import httpx
import numpy as np
import pytest

from tests.service.conftest import (
    MODEL,
    LiveServer,
    assert_error,
    decode_png,
    generate,
    png_bytes,
)


def _image(h: int = 40, w: int = 56) -> bytes:
    rng = np.random.default_rng(0)
    return png_bytes(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _segment(client: httpx.Client, image: bytes, **fields: str) -> httpx.Response:
    return client.post("/segment", files={"image": ("he.png", image, "image/png")}, data=fields)


@pytest.mark.parametrize(
    ("fmt", "shape"), [("index", (40, 56)), ("values", (40, 56)), ("color", (40, 56, 3))]
)
def test_segment_formats(client: httpx.Client, fmt: str, shape: tuple[int, ...]) -> None:
    r = _segment(client, _image(), format=fmt)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-histosynth-classes"] == "stroma,benign,tumour"
    out = decode_png(r.content)
    assert out.shape == shape
    if fmt != "color":
        assert set(np.unique(out)) <= {0, 1, 2}


def test_segment_output_feeds_generate(client: httpx.Client) -> None:
    labels = _segment(client, _image(), format="values").content
    assert generate(client, labels, seed=1).status_code == 200


def test_segment_bad_image(client: httpx.Client) -> None:
    assert_error(_segment(client, b"GIF89a nonsense"), 400, "invalid_image")
    assert_error(_segment(client, _image(), format="jpeg"), 422, "validation_error", "format")


def test_models_list_and_detail(client: httpx.Client) -> None:
    listing = client.get("/models").json()
    assert listing["default_model"] == MODEL
    (tiny,) = [m for m in listing["models"] if m["name"] == MODEL]
    assert tiny["loaded"] and tiny["default"] and tiny["num_classes"] == 3
    detail = client.get(f"/models/{MODEL}").json()
    assert [(c["index"], c["name"], c["values"], c["color"]) for c in detail["classes"]] == [
        (0, "stroma", [0], "#e6194b"), (1, "benign", [1], "#3cb44b"), (2, "tumour", [2], "#4363d8"),
    ]
    assert [s["downsample"] for s in detail["scales"]] == [1, 2, 4]
    assert detail["sha256"] == tiny["sha256"] and len(detail["sha256"]) == 64
    assert detail["training"]["mode"] == "joint"


def test_unknown_model_detail(client: httpx.Client) -> None:
    assert_error(client.get("/models/nope"), 404, "unknown_model", MODEL)


def test_model_published_after_start_is_served_without_restart(
    server: LiveServer, client: httpx.Client
) -> None:
    store = server.settings.model_store
    shutil.copy(f"{store}/{MODEL}.pt", f"{store}/late-model.pt")
    r = generate(client, model="late-model", seed=2)
    assert r.status_code == 200, r.text
    assert r.headers["x-histosynth-model"] == "late-model"
    assert "late-model" in [m["name"] for m in client.get("/models").json()["models"]]
