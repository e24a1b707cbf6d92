"""Real data: a few tiny training steps on the Gleason tiles, then a 1024x1024 image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.config import PRESETS, replace
from model.pipeline import load_pipeline
from model.training.data import load_dataset, read_mask
from model.training.train import train

pytestmark = pytest.mark.integration


def test_tiny_training_on_gleason_generates_1024(gleason_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset(gleason_dir, exclude=["test10", "test106"])
    assert len(dataset.names) == 6 and dataset.classes.num_classes == 4
    pre = PRESETS["tiny"]
    model_cfg = replace(pre.model, num_classes=4)
    result = train(model_cfg, replace(pre.train, steps_per_scale=2), dataset, tmp_path, name="gleason-tiny")
    pipe = load_pipeline(result.model_path, "cpu")
    raw = read_mask(gleason_dir / "masks" / "test106.png")[88:1112, 88:1112]  # centre 1024 crop
    out = pipe.generate(raw, n=2, seed=0)
    assert [im.shape for im in out.images] == [(1024, 1024, 3)] * 2
    assert not np.array_equal(out.images[0], out.images[1])
    labels = pipe.segment(out.images[0])
    assert labels.shape == (1024, 1024)
