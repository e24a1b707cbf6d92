"""Tiny baseline runs on the synthetic dataset, shared by the baseline tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.baselines.config import baseline_preset
from model.config import replace
from model.training.data import Dataset, load_dataset


def tiny_configs(arch: str, num_classes: int = 3, **train_changes: object) -> tuple:
    """The ``tiny`` baseline preset for ``arch`` with ``num_classes`` and training overrides."""
    pre = baseline_preset(arch, "tiny")
    return replace(pre.model, num_classes=num_classes), replace(pre.train, **train_changes)


@pytest.fixture(scope="session")
def synthetic_dataset(synthetic_dataset_dir: Path) -> Dataset:
    return load_dataset(synthetic_dataset_dir)


@pytest.fixture(scope="session")
def baseline_models(
    synthetic_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Serving files of every baseline trained for a few tiny steps."""
    from model.baselines.train import train_baseline

    out = {}
    for arch in ("pix2pix", "pix2pixhd", "fcdensenet", "fcdensenet-pyramid", "mean-teacher"):
        changes = {"labeled_fraction": 0.5} if arch == "mean-teacher" else {}
        model_cfg, train_cfg = tiny_configs(arch, **changes)
        result = train_baseline(
            model_cfg,
            train_cfg,
            synthetic_dataset,
            tmp_path_factory.mktemp(arch),
            name=f"tiny-{arch}",
        )
        assert result.model_path is not None
        out[arch] = result.model_path
    return out
