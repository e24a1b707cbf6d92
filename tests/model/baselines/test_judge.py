"""The independent judge: trained on real training tiles only, cached, never the model's S_0."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.baselines.config import JudgeConfig
from model.baselines.judge import Judge, judge_identity, judge_key, load_judge, train_judge
from model.config import replace
from model.training.data import Dataset, load_dataset

TINY = JudgeConfig(preset="tiny", downscale=2, tile_size=32, steps=3)


@pytest.fixture(scope="module")
def data(synthetic_dataset_dir: Path) -> Dataset:
    return load_dataset(synthetic_dataset_dir)


def _train(data: Dataset, held: list[str]) -> Dataset:
    keep = [i for i, n in enumerate(data.names) if n not in held]
    return Dataset(data.classes, [data.names[i] for i in keep], [data.images[i] for i in keep],
                   [data.masks[i] for i in keep], [], data.root)


def test_judge_trains_once_and_segments_at_full_size(data: Dataset, tmp_path: Path) -> None:
    train = _train(data, ["tile3"])
    path = train_judge(train, ["tile3"], tmp_path, TINY)
    stamp = path.stat().st_mtime_ns
    assert train_judge(train, ["tile3"], tmp_path, TINY) == path  # cached: not retrained
    assert path.stat().st_mtime_ns == stamp
    judge = load_judge(train, ["tile3"], tmp_path, TINY)
    labels = judge.segment(data.images[3])
    assert labels.shape == data.masks[3].shape and labels.max() < data.classes.num_classes
    info = judge.describe()
    assert info["arch"] == "fcdensenet" and info["trained_on"] == ["tile0", "tile1", "tile2"]
    assert info["held_out"] == ["tile3"] and info["downscale"] == 2


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({}, False),
        ({"holdout": ["tile2"]}, True),
        ({"cfg": replace(TINY, steps=4)}, True),
        ({"drop": "tile0"}, True),
        ({"pixel": True}, True),
    ],
)
def test_cache_key_covers_data_classes_holdout_and_budget(data: Dataset, change: dict, differs: bool
                                                          ) -> None:
    train = _train(data, ["tile3"])
    base = judge_key(judge_identity(train, ["tile3"], TINY))
    other = _train(data, ["tile3", change["drop"]]) if "drop" in change else train
    if change.get("pixel"):
        images = [im.copy() for im in train.images]
        images[0][0, 0, 0] ^= 1
        other = Dataset(train.classes, train.names, images, train.masks, [], train.root)
    key = judge_key(judge_identity(other, change.get("holdout", ["tile3"]), change.get("cfg", TINY)))
    assert (key != base) is differs


@pytest.mark.parametrize(
    ("cfg", "held", "message"),
    [
        (TINY, ["tile0"], "must not train the judge"),
        (replace(TINY, arch="pix2pix"), ["tile3"], "segmentation baseline"),
        (replace(TINY, downscale=0), ["tile3"], "downscale"),
    ],
)
def test_train_judge_rejects(data: Dataset, tmp_path: Path, cfg: JudgeConfig, held: list[str],
                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_judge(_train(data, ["tile3"]), held, tmp_path, cfg)


def test_judge_is_never_the_models_own_segmenter(tiny_model_path: Path) -> None:
    """Our pyramid's serving file (with its S_0) cannot be loaded as a judge."""
    with pytest.raises(ValueError, match="not a baseline"):
        Judge(tiny_model_path, 1, "cpu")


def test_evaluate_refuses_the_model_as_its_own_judge(tiny_model_path: Path, data: Dataset) -> None:
    from model.evaluation.evaluate import evaluate
    from model.pipeline import load_pipeline

    pipe = load_pipeline(tiny_model_path, "cpu")
    with pytest.raises(ValueError, match="must not be the evaluated model"):
        evaluate(pipe, data, holdout=["tile3"], variants=1, crop=None, judge=pipe,
                 two_sample=None, nuclei=None)
