"""Baseline training: a few steps of each give finite losses; the mean-teacher EMA update."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model.baselines.config import BASELINE_ARCHS, MeanTeacherConfig
from model.baselines.mean_teacher import consistency_weight, ema_decay, ema_update
from model.baselines.train import train_baseline
from model.nets.segmenter import MiniFCDenseNet
from model.training.data import Dataset
from tests.model.baselines.conftest import tiny_configs

EXPECTED_LOSSES = {
    "pix2pix": {"d", "g", "g_adv", "g_l1"},
    "pix2pixhd": {"d", "g", "g_adv", "g_feat"},  # perceptual off without a VGG19 file
    "fcdensenet": {"s_ce"},
    "fcdensenet-pyramid": {"s_ce"},
    "mean-teacher": {"s", "s_ce", "s_cons", "lambda"},
}


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_few_steps_finite_losses(arch: str, baseline_models: dict[str, Path]) -> None:
    run_dir = baseline_models[arch].parent
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    model_cfg, train_cfg = tiny_configs(arch)
    scales = model_cfg.num_scales if arch == "fcdensenet-pyramid" else 1
    assert len(records) == scales * train_cfg.steps
    for r in records:
        losses = {k.removeprefix("loss/"): v for k, v in r.items() if k.startswith("loss/")}
        assert set(losses) == EXPECTED_LOSSES[arch]
        assert all(math.isfinite(v) for v in losses.values())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["arch"] == arch


def test_ema_update_is_the_weighted_average() -> None:
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    student[1].running_mean.fill_(0.25)
    before = [p.detach().clone() for p in teacher.parameters()]
    alpha = 0.9
    ema_update(teacher, student, alpha)
    for t, t0, s in zip(teacher.parameters(), before, student.parameters(), strict=True):
        torch.testing.assert_close(t, alpha * t0 + (1 - alpha) * s, rtol=0, atol=1e-7)
    torch.testing.assert_close(teacher[1].running_mean, torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="decay"):
        ema_update(teacher, student, 1.5)


def test_ema_decay_and_consistency_rampup() -> None:
    cfg = MeanTeacherConfig(ema_decay=0.99, consistency=2.0, rampup_steps=10)
    assert ema_decay(0, cfg) == 0.0 and ema_decay(1, cfg) == 0.5 and ema_decay(10**6, cfg) == 0.99
    assert consistency_weight(0, cfg) == pytest.approx(2.0 * math.exp(-5))
    assert consistency_weight(10, cfg) == consistency_weight(50, cfg) == 2.0


def test_mean_teacher_teacher_trails_the_student(baseline_models: dict[str, Path]) -> None:
    """The served teacher differs from a fresh network: the EMA moved it."""
    from model.baselines.serving import load_baseline

    loaded = load_baseline(baseline_models["mean-teacher"])
    fresh = MiniFCDenseNet(3, 3, loaded.config.segmenter)
    assert loaded.segmenter is not None
    changed = [
        not torch.equal(a, b)
        for a, b in zip(
            loaded.segmenter.state_dict().values(), fresh.state_dict().values(), strict=True
        )
    ]
    assert any(changed)


def test_mean_teacher_needs_unlabelled_images(synthetic_dataset: Dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = tiny_configs("mean-teacher")
    with pytest.raises(ValueError, match="unlabelled"):
        train_baseline(model_cfg, train_cfg, synthetic_dataset, tmp_path, name="x")


def test_transductive_adds_evaluation_images(synthetic_dataset: Dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = tiny_configs("mean-teacher", transductive=True, steps=1)
    result = train_baseline(
        model_cfg,
        train_cfg,
        synthetic_dataset,
        tmp_path,
        name="x",
        eval_images=synthetic_dataset.images[:1],
    )
    assert result.model_path is not None and result.model_path.is_file()


@pytest.mark.parametrize(
    ("arch", "changes", "message"),
    [
        ("pix2pix", {"labeled_fraction": 0.5}, "do not apply"),
        ("fcdensenet", {"transductive": True}, "no unlabelled"),
        ("fcdensenet-pyramid", {"tile_size": 30}, "multiple"),
    ],
)
def test_bad_settings_are_named(
    arch: str, changes: dict, message: str, synthetic_dataset: Dataset, tmp_path: Path
) -> None:
    model_cfg, train_cfg = tiny_configs(arch, **changes)
    with pytest.raises(ValueError, match=message):
        train_baseline(model_cfg, train_cfg, synthetic_dataset, tmp_path, name="x")


def test_should_stop_returns_without_a_model(synthetic_dataset: Dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = tiny_configs("fcdensenet")
    result = train_baseline(
        model_cfg, train_cfg, synthetic_dataset, tmp_path, name="x", should_stop=lambda: True
    )
    assert result.stopped and result.model_path is None
