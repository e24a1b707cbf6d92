"""README figures and the per-scale outputs they show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.cli import main
from model.pipeline import generate_pyramid, load_pipeline
from tests.conftest import synthetic_tile


def test_pyramid_ends_with_the_generated_image(tiny_model_path: Path) -> None:
    pipe = load_pipeline(tiny_model_path, "cpu")
    mask = synthetic_tile(2)[1][:90, :70]
    scales = generate_pyramid(pipe, mask, seed=4)
    assert [s.shape[:2] for s in scales] == [(23, 18), (45, 35), (90, 70)]
    assert np.array_equal(scales[-1], pipe.generate(mask, 1, seed=4).images[0])


def test_figures_command_writes_every_figure(tiny_model_path: Path, synthetic_dataset_dir: Path,
                                             tmp_path: Path) -> None:
    mask = synthetic_dataset_dir / "masks" / "tile1.png"
    image = synthetic_dataset_dir / "images" / "tile1.png"
    code = main(["figures", "--model", str(tiny_model_path), "--mask", str(mask), "--image", str(image),
                 "--inset", "0,0", "--relabel", "benign=tumour", "--out", str(tmp_path)])
    assert code == 0
    for suffix in ("variants.jpg", "pyramid.jpg", "full.jpg", "manipulation.jpg"):
        assert (tmp_path / f"tiny-synthetic-{suffix}").stat().st_size > 0
    shares = json.loads((tmp_path / "tiny-synthetic-manipulation.json").read_text())["s0_class_shares"]
    assert abs(sum(shares["relabelled"].values()) - 1) < 1e-3
