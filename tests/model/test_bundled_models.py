"""The demo models shipped in models/: metadata, provenance, evaluation and a generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import read_payload, weights_sha256
from model.pipeline import load_pipeline

MODELS = Path(__file__).resolve().parents[2] / "models"
HELD_OUT = ["test101", "test106"]


@pytest.mark.parametrize("name,classes", [("prostate-gleason", 4), ("prostate-binary", 2)])
def test_shipped_model(name: str, classes: int) -> None:
    path = MODELS / f"{name}.pt"
    assert path.is_file(), f"bundled model {path} is missing"
    assert path.stat().st_size <= 25 * 2**20
    meta = read_payload(path)["metadata"]
    assert meta["name"] == name and meta["mode"] == "joint" and meta["preset"] == "realistic-fine"
    # the coarse scales come from the committed partial file of the `realistic` preset
    assert meta["init_from"] == {"file": f"checkpoints/realistic/{name}.pt", "scales": 3}
    assert (MODELS.parent / meta["init_from"]["file"]).is_file()
    assert meta["held_out"] == HELD_OUT and not set(HELD_OUT) & set(meta["dataset"]["names"])
    assert meta["command"].startswith("histosynth train") and meta["wall_time_s"] > 0
    assert "gleason_grade" in meta["data_provenance"]
    ev = meta["evaluation"]  # a histosynth evaluate report on the held-out tiles
    assert sorted(ev["setup"]["holdout"]) == sorted(HELD_OUT) and ev["setup"]["variants"] == 8
    assert ev["model"]["name"] == name
    assert ev["model"]["weights_sha256"] == weights_sha256(path)  # the report is of these weights
    for key in ("mask_consistency", "realism", "diversity", "segmentation", "two_sample", "nuclei",
                "independent_judge"):
        assert key in ev, f"evaluation lacks {key}"
    pipe = load_pipeline(path, "cpu")
    assert pipe.classes.num_classes == classes and pipe.config.num_scales == 5
    mask = np.full((64, 96), 4, np.uint8)  # raw values: stroma with a high-grade gland
    mask[16:48, 24:72] = 1
    out = pipe.generate(mask, n=2, seed=0)
    assert [im.shape for im in out.images] == [(64, 96, 3)] * 2
    assert not np.array_equal(out.images[0], out.images[1])
    assert pipe.segment(out.images[0]).shape == (64, 96)
