"""One scale step: D is frozen while G and S learn through it, with the same result."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch import nn

from model.config import PRESETS, LossConfig, replace
from model.nets.discriminator import PyramidDiscriminator
from model.nets.generator import PyramidGenerator
from model.nets.segmenter import PyramidSegmenter
from model.training import steps
from model.training.steps import (
    GeneratorBatch,
    ScaleBatch,
    ScaleNets,
    ScaleStep,
    SegmenterBatch,
    UnlabeledBatch,
    frozen,
)
from model.training.train import adam


def _players(**model: object) -> tuple[nn.Module, nn.Module, nn.Module, ScaleBatch]:
    torch.manual_seed(0)
    cfg = replace(PRESETS["tiny"].model, num_classes=3, **model)
    g, d, s = (PyramidGenerator(cfg).scales[2], PyramidDiscriminator(cfg).scales[2],
               PyramidSegmenter(cfg).scales[2])
    labels = torch.randint(0, 3, (2, 16, 16))
    y = nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    gen = GeneratorBatch(x=torch.rand(2, 3, 16, 16) * 2 - 1, y=y, z=torch.randn(2, 3, 16, 16), up_fake=None,
                         up_rec=None, rec=True)
    seg = SegmenterBatch(labels=labels, z_s=torch.randn(2, cfg.segmenter.noise_channels, 16, 16), s_prev=None,
                         syn_prev=None)
    return g, d, s, ScaleBatch(gen, seg)


def _run(step_count: int, freeze: bool, monkeypatch: pytest.MonkeyPatch, inplace: bool = True,
         **model: object) -> dict[str, dict[str, torch.Tensor]]:
    g, d, s, batch = (copy.deepcopy(m) for m in _players(**model))
    if not inplace:  # the code before: every activation wrote a new tensor
        for m in (g, d, s):
            for act in m.modules():
                if isinstance(act, nn.ReLU | nn.LeakyReLU):
                    assert act.inplace
                    act.inplace = False
    nets = ScaleNets(g, d, adam(g, 1e-3, (0.5, 0.999)), adam(d, 1e-3, (0.5, 0.999)), segmenter=s,
                     opt_s=adam(s, 1e-3, (0.5, 0.999)))
    if not freeze:  # the code before: D's weight gradients computed in the G and S updates too
        monkeypatch.setattr(steps, "frozen", lambda module: contextlib.nullcontext())
    step = ScaleStep(LossConfig(), None, contextlib.nullcontext)
    for _ in range(step_count):
        torch.manual_seed(1)  # dropout in S
        step.run(nets, batch, use_synthetic=True)
    monkeypatch.undo()
    return {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in
            (("G", g), ("D", d), ("S", s))}


def test_freezing_d_in_the_g_and_s_updates_changes_no_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    with_freeze = _run(3, True, monkeypatch)
    without = _run(3, False, monkeypatch)
    for name, state in with_freeze.items():
        for key, value in state.items():
            assert torch.equal(value, without[name][key]), f"{name}.{key}"
    d0 = _players()[1].state_dict()
    assert any(not torch.equal(v, d0[k]) for k, v in with_freeze["D"].items())  # D did learn


@pytest.mark.parametrize("model", [{}, {"generator": {"norm": "none", "mask_input": "concat"},
                                          "discriminator": {"weight_norm": "spectral", "norm": "instance"}}],
                         ids=["tiny", "realistic-nets"])
def test_activations_in_place_change_no_weight(model: dict[str, dict[str, str]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    base = PRESETS["tiny"].model
    fields = {k: replace(getattr(base, k), **v) for k, v in model.items()}
    in_place = _run(2, True, monkeypatch, **fields)
    copied = _run(2, True, monkeypatch, inplace=False, **fields)
    for name, state in in_place.items():
        for key, value in state.items():
            assert torch.equal(value, copied[name][key]), f"{name}.{key}"


def test_d_keeps_only_its_own_gradients() -> None:
    g, d, s, batch = _players()
    nets = ScaleNets(g, d, adam(g, 1e-3, (0.5, 0.999)), adam(d, 1e-3, (0.5, 0.999)), segmenter=s,
                     opt_s=adam(s, 1e-3, (0.5, 0.999)))
    grads_after_d = {}
    nets.opt_d.register_step_post_hook(
        lambda *_: grads_after_d.update({n: p.grad.clone() for n, p in d.named_parameters()}))
    ScaleStep(LossConfig(), None, contextlib.nullcontext).run(nets, batch, use_synthetic=True)
    for n, p in d.named_parameters():
        assert p.requires_grad, n  # D learns again at the next step
        assert torch.equal(p.grad, grads_after_d[n]), n  # nothing added by the G and S updates


def test_frozen_restores_only_what_needed_gradients() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    net[1].bias.requires_grad_(False)
    x = torch.randn(3, 2, requires_grad=True)
    with frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
        net(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == [True, True, True, False]


def _d_update(per_sample: bool, loss: LossConfig, augment: tuple[str, ...], unlabeled: bool
              ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """D's loss and gradients in its first update (not its weights after Adam: where a
    gradient is near zero, Adam's first step turns float rounding into a full-size step)."""
    g, d, s, batch = (copy.deepcopy(m) for m in _players())
    d.per_sample = per_sample  # False: one D call per pair, as before the joint call
    if unlabeled:
        torch.manual_seed(2)
        batch.unlabeled = UnlabeledBatch(u=torch.rand(3, 3, 16, 16) * 2 - 1, u_prev=None,
                                         z_u=torch.randn(3, 1, 16, 16),
                                         pseudo_mask=torch.tensor([True, False, True]))
    nets = ScaleNets(g, d, adam(g, 1e-3, (0.5, 0.999)), adam(d, 1e-3, (0.5, 0.999)), segmenter=s,
                     opt_s=adam(s, 1e-3, (0.5, 0.999)))
    grads: dict[str, torch.Tensor] = {}
    nets.opt_d.register_step_pre_hook(lambda *_: grads.update({n: p.grad.clone() for n, p in d.named_parameters()}))
    torch.manual_seed(1)  # the augmentation draws
    logs = ScaleStep(loss, None, contextlib.nullcontext, augment=augment).run(nets, batch, use_synthetic=True)
    return {k: v for k, v in steps.read_losses([logs]).items() if k.startswith("d")}, grads


@pytest.mark.parametrize(("loss", "augment", "unlabeled"), [
    (LossConfig(), (), False),
    (LossConfig(r1=0.1), ("translation", "cutout"), False),
    (LossConfig(adversarial="hinge"), ("translation",), True),
])
def test_one_d_call_for_all_pairs_gives_the_d_update_of_one_call_each(loss: LossConfig, augment: tuple[str, ...],
                                                                      unlabeled: bool) -> None:
    assert _players()[1].per_sample  # the tiny preset's D: instance norm, no spectral norm
    joint_logs, joint = _d_update(True, loss, augment, unlabeled)
    alone_logs, alone = _d_update(False, loss, augment, unlabeled)
    assert joint_logs.keys() == alone_logs.keys() and len(joint_logs) == 1 + (loss.r1 > 0)
    for k, v in joint_logs.items():
        assert v == pytest.approx(alone_logs[k], rel=1e-5), k
    assert joint.keys() == alone.keys()
    for k, v in joint.items():
        torch.testing.assert_close(v, alone[k], rtol=1e-4, atol=1e-6, msg=k)
