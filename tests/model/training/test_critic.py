"""Training the mask critic on real pairs: it learns, is frozen, and does not move the scale's draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import PRESETS, replace
from model.training.critic import critic_batch, mask_consistency, train_critic
from model.training.data import TileSampler, load_dataset


@pytest.fixture(scope="module")
def dataset(synthetic_dataset_dir: Path):
    return load_dataset(synthetic_dataset_dir)


def _cfgs(dataset, steps: int):
    model_cfg = replace(PRESETS["tiny"].model, num_classes=dataset.classes.num_classes)
    train_cfg = replace(PRESETS["tiny"].train, **{"critic.steps": steps, "critic.width": 8,
                                                  "critic.dilations": (1, 2, 4), "critic.lr": 3e-3})
    return model_cfg, train_cfg


def _sampler(dataset, train_cfg) -> TileSampler:
    return TileSampler(dataset.images, dataset.masks, train_cfg.tile_size, train_cfg.tile_overlap,
                       train_cfg.color_jitter, 0)


def test_mask_consistency_is_the_soft_cross_entropy() -> None:
    mask = torch.zeros(1, 2, 2, 2)
    mask[:, 0] = 1.0
    confident = torch.tensor([10.0, -10.0])[None, :, None, None].expand(1, 2, 2, 2)
    assert float(mask_consistency(confident, mask)) < 1e-6
    assert float(mask_consistency(-confident, mask)) > 10
    assert float(mask_consistency(torch.zeros(1, 2, 2, 2), mask)) == pytest.approx(np.log(2))


@pytest.mark.parametrize("n", [0, 2])
def test_the_critic_learns_to_segment_real_pairs_and_is_frozen(dataset, n: int) -> None:
    model_cfg, train_cfg = _cfgs(dataset, 150)
    sampler = _sampler(dataset, train_cfg)
    critic, report = train_critic(sampler, train_cfg, model_cfg, n, 4, torch.device("cpu"))
    assert report.scale == n and report.steps == 150
    assert report.accuracy > 0.9  # the synthetic classes differ in colour: easy to tell apart
    assert not critic.training and not any(p.requires_grad for p in critic.parameters())
    untrained, _ = train_critic(sampler, replace(train_cfg, **{"critic.steps": 1}), model_cfg, n, 4,
                                torch.device("cpu"))
    x, y = critic_batch(sampler, train_cfg, model_cfg, n, 4, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert x.shape[-1] == min(train_cfg.crop_size, train_cfg.tile_size // 2**n) and y.shape[1] == model_cfg.num_classes
    assert float(mask_consistency(critic(x), y)) < 0.5 * float(mask_consistency(untrained(x), y))


def test_the_critic_is_the_same_whatever_the_sampler_drew_before(dataset) -> None:
    model_cfg, train_cfg = _cfgs(dataset, 3)
    a, b = _sampler(dataset, train_cfg), _sampler(dataset, train_cfg)
    b.sample(5)  # b's stream has moved on
    critic_a, _ = train_critic(a, train_cfg, model_cfg, 1, 2, torch.device("cpu"))
    critic_b, _ = train_critic(b, train_cfg, model_cfg, 1, 2, torch.device("cpu"))
    for key, value in critic_a.state_dict().items():
        assert torch.equal(value, critic_b.state_dict()[key])


@pytest.mark.parametrize(("floor", "paid"), [(0.0, True), (1e6, False)])
def test_the_mask_term_pays_only_what_exceeds_the_floor(floor: float, paid: bool) -> None:
    import contextlib
    import copy

    from model.config import CriticConfig, LossConfig
    from model.nets.critic import MaskCritic
    from model.nets.discriminator import PyramidDiscriminator
    from model.nets.generator import PyramidGenerator
    from model.training.steps import GeneratorBatch, ScaleNets, ScaleStep
    from model.training.train import adam

    torch.manual_seed(0)
    model_cfg = replace(PRESETS["tiny"].model, num_classes=3)
    g, d = PyramidGenerator(model_cfg).scales[2], PyramidDiscriminator(model_cfg).scales[2]
    critic = MaskCritic(3, CriticConfig(width=4, dilations=(1, 2))).requires_grad_(False)
    y = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 16, 16)), 3).permute(0, 3, 1, 2).float()
    batch = GeneratorBatch(x=torch.rand(2, 3, 16, 16) * 2 - 1, y=y, z=torch.randn(2, 3, 16, 16), up_fake=None,
                           up_rec=None, rec=False)
    totals = {}
    for name, f in (("zero", 0.0), ("this", floor)):
        gen = copy.deepcopy(g)
        nets = ScaleNets(gen, d, adam(gen, 1e-4, (0.5, 0.999)), adam(d, 1e-4, (0.5, 0.999)), critic=critic,
                         critic_floor=f)
        step = ScaleStep(LossConfig(mask=2.0), None, contextlib.nullcontext)
        with torch.no_grad():
            fake = gen(batch.y, batch.z, None)
        logs = step._generator_step(nets, batch, fake)
        totals[name] = (float(logs["g"]), float(logs["g_mask"]))
    (g_zero, mask_zero), (g_this, mask_this) = totals["zero"], totals["this"]
    assert mask_zero == pytest.approx(mask_this)  # the cross-entropy is logged either way
    assert g_zero - g_this == pytest.approx(0.0 if paid else 2.0 * mask_zero, abs=1e-5)
