"""Multi-view conditional PatchGAN discriminator."""

from __future__ import annotations

import pytest
import torch

from model.config import DiscriminatorConfig, ModelConfig, Norm, WeightNorm
from model.nets.discriminator import (
    Blur,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    PyramidDiscriminator,
)


def _cfg(layers: int = 2, views: int = 3, norm: Norm = "instance") -> DiscriminatorConfig:
    return DiscriminatorConfig(
        base_width=4,
        max_width=8,
        num_layers=layers,
        num_views=views,
        norm=norm,
    )


@pytest.mark.parametrize(
    ("layers", "h", "w", "expected"),
    # k4 p2: stride 2 maps s -> s // 2 + 1, the two stride-1 layers map s -> s + 1
    [(1, 16, 16, (11, 11)), (2, 16, 8, (7, 5)), (3, 32, 32, (7, 7)), (3, 4, 4, (4, 4))],
)
def test_patch_logits_and_features(layers: int, h: int, w: int, expected: tuple[int, int]) -> None:
    d = PatchDiscriminator(5, _cfg(layers))
    logits, feats = d(torch.randn(2, 5, h, w))
    assert logits.shape == (2, 1, *expected)
    assert len(feats) == layers + 1
    assert [f.shape[1] for f in feats] == [min(4 * 2**i, 8) for i in range(layers + 1)]


@pytest.mark.parametrize(
    ("k", "views", "layers", "h", "w", "norm"),
    [
        (2, 3, 2, 16, 16, "instance"),
        (4, 3, 3, 16, 16, "instance"),
        (3, 2, 2, 24, 40, "batch"),
        (2, 1, 3, 9, 7, "none"),
        (4, 3, 3, 64, 48, "instance"),
    ],
)
def test_multiscale_views(k: int, views: int, layers: int, h: int, w: int, norm: Norm) -> None:
    d = MultiScaleDiscriminator(k, _cfg(layers, views, norm))
    out = d(torch.randn(2, 3, h, w), torch.rand(2, k, h, w))
    assert len(out) == views
    for logits, feats in out:
        assert logits.shape[:2] == (2, 1) and min(logits.shape[-2:]) >= 1
        assert len(feats) == layers + 1
    # coarser views see smaller inputs
    firsts = [feats[0].shape[-1] for _, feats in out]
    assert firsts == sorted(firsts, reverse=True)


def test_views_share_architecture_not_weights() -> None:
    d = MultiScaleDiscriminator(2, _cfg())
    shapes = [[p.shape for p in v.parameters()] for v in d.views]
    assert shapes[0] == shapes[1] == shapes[2]
    assert not torch.equal(d.views[0].head.weight, d.views[1].head.weight)


def test_too_small_input_is_a_clear_error() -> None:
    d = MultiScaleDiscriminator(2, _cfg(views=3))
    with pytest.raises(ValueError, match="too small"):
        d(torch.randn(1, 3, 4, 4), torch.rand(1, 2, 4, 4))


def test_gradients_reach_the_image() -> None:
    d = MultiScaleDiscriminator(2, _cfg())
    image = torch.randn(1, 3, 16, 16, requires_grad=True)
    out = d(image, torch.rand(1, 2, 16, 16))
    sum(logits.mean() for logits, _ in out).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.parameters())


def test_pyramid_discriminator_indexed_by_scale() -> None:
    d = PyramidDiscriminator(ModelConfig(num_classes=3, num_scales=3, discriminator=_cfg()))
    assert len(d) == 3 and isinstance(d[2], MultiScaleDiscriminator)
    out = d(1, torch.randn(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    assert len(out) == 3


def test_spectral_norm_bounds_every_conv() -> None:
    cfg = DiscriminatorConfig(base_width=8, max_width=16, num_layers=2, num_views=2, weight_norm="spectral")
    d = MultiScaleDiscriminator(2, cfg)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    for _ in range(30):  # power iterations converge in training mode
        d(torch.randn(2, 3, 32, 32), torch.rand(2, 2, 32, 32))
    d.eval()
    for c in convs:
        sigma = torch.linalg.matrix_norm(c.weight.detach().flatten(1), ord=2)
        assert float(sigma) <= 1.05
    plain = MultiScaleDiscriminator(2, DiscriminatorConfig(base_width=8, max_width=16, num_layers=2, num_views=2))
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())
    with pytest.raises(ValueError, match="weight_norm"):
        MultiScaleDiscriminator(2, DiscriminatorConfig(weight_norm="weight"))  # type: ignore[arg-type]


def test_blur_removes_the_finest_period_and_keeps_constants() -> None:
    blur = Blur(2)
    yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1).float().expand(1, 2, 8, 8)
    assert blur(checker)[..., 1:-1, 1:-1].abs().max() == 0  # period 2: the Nyquist pattern is gone
    flat = torch.full((1, 2, 5, 3), 0.7)
    assert torch.allclose(blur(flat), flat)  # edges replicated: a constant stays constant
    assert dict(blur.state_dict()) == {}  # nothing to store


def test_antialias_blurs_before_every_strided_conv_only() -> None:
    plain = PatchDiscriminator(5, DiscriminatorConfig(base_width=8, num_layers=3))
    aa = PatchDiscriminator(5, DiscriminatorConfig(base_width=8, num_layers=3, antialias=True))
    assert not any(isinstance(m, Blur) for m in plain.modules())  # off: the architecture of before
    assert [isinstance(layer[0], Blur) for layer in aa.layers] == [True, True, True, False]
    assert sum(t.numel() for t in aa.state_dict().values()) == sum(t.numel() for t in plain.state_dict().values())
    x = torch.randn(2, 5, 37, 29)
    (logits, feats), (logits_aa, feats_aa) = plain(x), aa(x)
    assert logits.shape == logits_aa.shape
    assert [f.shape for f in feats] == [f.shape for f in feats_aa]


@pytest.mark.parametrize(("norm", "weight_norm", "antialias", "per_sample"), [
    ("instance", "none", False, True),
    ("none", "none", True, True),
    ("batch", "none", False, False),  # batch statistics mix the samples
    ("instance", "spectral", False, False),  # every training call advances the power iteration
])
def test_per_sample_discriminators_judge_a_joint_batch_as_each_batch(norm: Norm, weight_norm: WeightNorm,
                                                                     antialias: bool, per_sample: bool) -> None:
    torch.manual_seed(0)
    cfg = DiscriminatorConfig(base_width=8, max_width=16, num_layers=2, num_views=2, norm=norm,
                              weight_norm=weight_norm, antialias=antialias)
    d = MultiScaleDiscriminator(3, cfg)
    assert d.per_sample is per_sample
    if not per_sample:
        return
    images, masks = torch.randn(5, 3, 32, 32), torch.rand(5, 3, 32, 32)
    joint = d(images, masks)
    for part in (slice(0, 2), slice(2, 5)):
        alone = d(images[part], masks[part])
        for (logits_j, feats_j), (logits_a, feats_a) in zip(joint, alone, strict=True):
            torch.testing.assert_close(logits_j[part], logits_a)
            for fj, fa in zip(feats_j, feats_a, strict=True):
                torch.testing.assert_close(fj[part], fa)
