"""Synthetic pairs from masks: the generator call, relabelling and the per-mask cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.augmentation import TRANSFORMS, PairMaker, plan_pairs, transform
from model.imageio import read_mask
from model.pipeline import load_pipeline


def test_pairs_follow_the_plan_and_read_each_mask_once(tiny_model_path: Path,
                                                      synthetic_dataset_dir: Path) -> None:
    pipe = load_pipeline(tiny_model_path, "cpu")
    reads: list[str] = []

    def read(key: str) -> np.ndarray:
        reads.append(key)
        return read_mask(synthetic_dataset_dir / key)

    maker = PairMaker(pipe, read, noise=0.5, relabel={"benign": "tumour"})
    pairs = plan_pairs(["masks/tile0.png", "masks/tile1.png"], TRANSFORMS["flips"], 1, job_seed=2)
    made = [maker.make(p) for p in pairs]
    assert reads == ["masks/tile0.png", "masks/tile1.png"]
    labels = pipe.classes.relabel(pipe.decode_mask(read_mask(synthetic_dataset_dir / "masks/tile0.png")),
                                  {"benign": "tumour"})
    image, mask = made[1]  # tile0, flip_h
    np.testing.assert_array_equal(mask, transform(labels, "flip_h"))
    expected = pipe.generate(mask, n=1, seed=pairs[1].seed, noise=0.5, encoding="index").images[0]
    np.testing.assert_array_equal(image, expected)
    assert 1 not in np.unique(mask)


def test_unknown_class_fails_before_any_mask_is_read(tiny_model_path: Path) -> None:
    pipe = load_pipeline(tiny_model_path, "cpu")
    with pytest.raises(ValueError, match="unknown class 'gland'"):
        PairMaker(pipe, lambda key: pytest.fail("read a mask"), noise=1.0, relabel={"gland": "tumour"})
