"""Shared fixtures: real-data location, a synthetic dataset and a tiny trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest_plugins = ["tests.services"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(1)

SYNTH_CLASSES = {
    "name": "synthetic",
    "description": "Hand-made test tiles: stroma background, two gland types.",
    "classes": [
        {"name": "stroma", "values": [0], "color": "#e6194b"},
        {"name": "benign", "values": [1], "color": "#3cb44b"},
        {"name": "tumour", "values": [2], "color": "#4363d8"},
    ],
}


def synthetic_tile(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A pink textured tile with purple disc 'glands' and its 3-class mask (raw values 0, 1, 2)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), np.uint8)
    for _ in range(4):
        cy, cx = rng.integers(10, size - 10, 2)
        r = rng.integers(6, 16)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(1, 3)
    base = np.array([[235, 170, 200], [150, 90, 170], [110, 50, 140]], np.float32)
    img = base[mask] + rng.normal(0, 12, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8), mask


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def gleason_dir() -> Path:
    path = SHARED_DATA / "gleason"
    if not (path / "images").is_dir():
        pytest.skip(f"real data not found at {path}")
    return path


def write_synthetic_dataset(root: Path, count: int = 4, size: int = 96) -> Path:
    """``count`` synthetic tiles ``tile0..`` of ``size`` px, their masks and the class table."""
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i in range(count):
        img, mask = synthetic_tile(i, size)
        Image.fromarray(img).save(root / "images" / f"tile{i}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"tile{i}.png")
    (root / "classes.json").write_text(json.dumps(SYNTH_CLASSES))
    return root


@pytest.fixture(scope="session")
def synthetic_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic-dataset"))


@pytest.fixture(scope="session")
def tiny_model_path(synthetic_dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A serving file trained (joint mode, `tiny` preset) on the synthetic dataset in seconds."""
    from model.config import PRESETS, replace
    from model.training.data import load_dataset
    from model.training.train import train

    dataset = load_dataset(synthetic_dataset_dir)
    pre = PRESETS["tiny"]
    result = train(
        replace(pre.model, num_classes=dataset.classes.num_classes),
        pre.train,
        dataset,
        tmp_path_factory.mktemp("tiny-run"),
        name="tiny-synthetic",
    )
    assert result.model_path is not None
    return result.model_path
