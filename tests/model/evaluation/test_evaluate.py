"""evaluate() with a fake pipeline (palette colour plus noise; nearest-colour segmenter)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from model.classes import ClassTable
from model.config import TwoSampleConfig
from model.evaluation import evaluate as E
from model.training.data import Dataset
from tests.conftest import SYNTH_CLASSES, synthetic_tile

PALETTE = np.array([[235, 170, 200], [150, 90, 170], [110, 50, 140]], np.float64)


class FakePipeline:
    """The Pipeline API of DESIGN.md without training: palette colour + seeded noise."""

    def __init__(self, classes: ClassTable, name: str = "fake", has_segmenter: bool = True) -> None:
        self.classes, self.name, self.sha256 = classes, name, "0" * 64
        self.config = SimpleNamespace(num_classes=classes.num_classes)
        self.metadata = {"has_segmenter": has_segmenter}
        self.segment_calls = 0

    def generate(self, mask: np.ndarray, n: int = 1, seed: int | None = None, noise: float = 1.0,
                 encoding: str = "auto") -> Any:
        labels = self.classes.decode(mask, encoding)
        seeds = [int(seed or 0) + i for i in range(n)]
        images = [
            np.clip(PALETTE[labels] + np.random.default_rng(s).normal(0, 12, (*labels.shape, 3)),
                    0, 255).astype(np.uint8)
            for s in seeds
        ]
        return SimpleNamespace(images=images, seeds=seeds, seed=seeds[0])

    def segment(self, image: np.ndarray) -> np.ndarray:
        self.segment_calls += 1
        dist = ((image[:, :, None, :].astype(np.float64) - PALETTE[: self.classes.num_classes]) ** 2)
        return dist.sum(-1).argmin(-1).astype(np.int64)


def _dataset(classes: ClassTable, binary: bool = False, size: int = 64) -> Dataset:
    tiles = [synthetic_tile(i, size) for i in range(4)]
    masks = [np.minimum(m, 1) if binary else m for _, m in tiles]
    return Dataset(classes, [f"t{i}" for i in range(4)], [im for im, _ in tiles],
                   [m.astype(np.int64) for m in masks], [], "synthetic")


@pytest.fixture(scope="module")
def classes() -> ClassTable:
    return ClassTable.from_dict(SYNTH_CLASSES)


FAST = TwoSampleConfig(patch=16, steps=20, batch_size=8, width=4, test_stride=16)


def _judge(classes: ClassTable) -> FakePipeline:
    judge = FakePipeline(classes, name="judge")
    judge.sha256 = "1" * 64
    return judge


@pytest.fixture(scope="module")
def report(classes: ClassTable) -> dict[str, Any]:
    return E.evaluate(FakePipeline(classes), _dataset(classes), holdout=["t0", "t1"], variants=3,
                      crop=48, seed=5, relabel={"benign": "tumour"}, judge=_judge(classes),
                      two_sample=FAST)


def test_report_is_plain_json(report: dict[str, Any]) -> None:
    json.dumps(report, allow_nan=False)
    assert report["setup"]["holdout"] == ["t0", "t1"] and report["setup"]["train"] == ["t2", "t3"]
    assert report["setup"]["crop_shapes"] == [[48, 48], [48, 48]]


def test_segmentation_and_consistency(report: dict[str, Any]) -> None:
    assert report["segmentation"]["miou"] > 0.9 and "objects" not in report["segmentation"]
    mc = report["mask_consistency"]
    assert mc["segmenter"] == "fake" and mc["generated"]["pixels"] == 3 * 2 * 48 * 48
    assert mc["ratio_miou"] == pytest.approx(1.0, abs=0.05)


def test_two_sample_nuclei_and_independent_judge(classes: ClassTable, report: dict[str, Any]) -> None:
    r = report
    ts = r["two_sample"]
    assert 0.0 <= ts["generated_vs_real"]["accuracy"] <= 1.0
    assert ts["generated_vs_real"]["n_images"] == [2, 6] and ts["floor_train_vs_real"]["n_images"] == [2, 2]
    nuc = r["nuclei"]
    assert set(nuc["ratio"]["per_class"]) == set(classes.names) and nuc["threshold"] > 0
    assert nuc["ratio_reference_vs_real"] is not None
    ij = r["independent_judge"]
    assert ij["segmenter"] == "judge" and ij["judge"]["sha256"] == "1" * 64
    assert ij["ratio_miou"] == pytest.approx(1.0, abs=0.05)
    assert r["targets"]["two_sample_accuracy_max"] == 0.75
    table = E.format_table(r)
    assert "two-sample classifier accuracy" in table and "floor train vs real" in table
    assert "independent judge judge" in table
    dc = r["detail_colour"]["by_pool"]
    assert [row["pool"] for row in dc] == [2, 8]
    assert all(0 <= row["generated"]["off_axis"] <= 1 and row["reference"] is not None for row in dc)
    assert "fine detail (2 px) off its first colour axis" in table


def test_the_model_is_never_its_own_independent_judge(classes: ClassTable) -> None:
    pipe = FakePipeline(classes)
    with pytest.raises(ValueError, match="must not be the evaluated model"):
        E.evaluate(pipe, _dataset(classes, size=32), holdout=["t0"], variants=1, judge=pipe)


def test_realism_diversity_fid(report: dict[str, Any]) -> None:
    realism = report["realism"]
    assert realism["swd_generated_vs_real"]["mean"] > 0 and realism["ratio"] > 0
    div = report["diversity"]
    assert 0 < div["pairwise_ms_ssim"] < 1 and 0 < div["to_real_ms_ssim"] < 1
    fid = report["fid"]
    assert fid["extractor"] == "randconv-v1" and (fid["n_generated"], fid["n_real"]) == (6, 2)
    assert fid["fid"] >= 0 and fid["fid_train_vs_real"] >= 0 and fid["kid"] is not None


def test_manipulation_moves_the_shares(report: dict[str, Any]) -> None:
    man = report["manipulation"]
    assert man["relabelled_mask_shares"]["benign"] == 0
    assert man["relabelled_generated_shares"]["benign"] < 0.01
    assert man["relabelled_generated_shares"]["tumour"] > man["generated_shares"]["tumour"]


def test_deterministic(classes: ClassTable, report: dict[str, Any]) -> None:
    again = E.evaluate(FakePipeline(classes), _dataset(classes), holdout=["t0", "t1"], variants=3,
                       crop=48, seed=5, relabel={"benign": "tumour"}, judge=_judge(classes),
                       two_sample=FAST)
    assert again == report


def test_binary_model_gets_object_metrics_and_own_segmenter() -> None:
    binary = ClassTable.binary()
    judge = FakePipeline(binary, name="judge")
    r = E.evaluate(FakePipeline(binary), _dataset(binary, binary=True, size=48), holdout=["t3"],
                   variants=1, crop=None, segmenter=judge)
    objects = r["segmentation"]["objects"]
    assert objects["object_f1"] > 0.5 and objects["object_dice"] > 0.8
    assert r["mask_consistency"]["segmenter"] == "judge" and judge.segment_calls == 2
    assert r["diversity"]["pairwise_ms_ssim"] is None  # one variant: no pairs
    assert r["setup"]["crop_shapes"] == [[48, 48]]


def test_generate_mode_model_skips_segmentation(classes: ClassTable) -> None:
    r = E.evaluate(FakePipeline(classes, has_segmenter=False), _dataset(classes, size=32),
                   holdout=["t0"], train_names=["t1"], variants=2, crop=32)
    assert "skipped" in r["segmentation"] and "skipped" in r["mask_consistency"]
    assert r["fid"]["fid"] is None  # one real image: no covariance


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"holdout": ["nope"]}, "nope"), ({"holdout": []}, "held-out"),
     ({"holdout": ["t0"], "train_names": ["t0"]}, "both"),
     ({"holdout": ["t0"], "relabel": {"benign": "grade9"}}, "grade9"),
     ({"holdout": ["t0"], "variants": 0}, "variants")],
)
def test_bad_arguments(classes: ClassTable, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        E.evaluate(FakePipeline(classes), _dataset(classes, size=32), **kwargs)


def test_class_table_mismatch(classes: ClassTable) -> None:
    with pytest.raises(ValueError, match="classes"):
        E.evaluate(FakePipeline(ClassTable.binary()), _dataset(classes, size=32), holdout=["t0"])


def test_center_crop_clips() -> None:
    a = np.arange(30).reshape(5, 6)
    assert E.center_crop(a, 3).tolist() == [[7, 8, 9], [13, 14, 15], [19, 20, 21]]
    assert E.center_crop(a, 100).shape == (5, 6) and E.center_crop(a, None) is a
