"""Shared blocks: norms, conv block, one-hot, resampling, padding."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from model.config import Norm
from model.nets.blocks import (
    ConvBlock,
    PadMode,
    crop,
    downsample,
    gaussian_taps,
    make_norm,
    one_hot,
    pad_to_multiple,
    seed_points,
    seed_scale,
    smooth_noise,
    upsample,
)


@pytest.mark.parametrize(
    ("norm", "cls"),
    [("batch", nn.BatchNorm2d), ("instance", nn.InstanceNorm2d), ("none", nn.Identity)],
)
def test_make_norm(norm: Norm, cls: type) -> None:
    assert isinstance(make_norm(norm, 4), cls)


def test_make_norm_unknown() -> None:
    with pytest.raises(ValueError, match="unknown norm"):
        make_norm("group", 4)  # type: ignore[arg-type]


@pytest.mark.parametrize(("h", "w"), [(8, 8), (5, 7), (2, 3)])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_conv_block_keeps_size(h: int, w: int, norm: Norm) -> None:
    out = ConvBlock(3, 6, norm)(torch.randn(2, 3, h, w))
    assert out.shape == (2, 6, h, w)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_one_hot(k: int) -> None:
    labels = torch.randint(0, k, (2, 5, 6))
    y = one_hot(labels, k)
    assert y.shape == (2, k, 5, 6) and y.dtype == torch.float32
    assert torch.equal(y.argmax(1), labels)
    assert torch.all(y.sum(1) == 1)


def test_one_hot_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        one_hot(torch.zeros(5, 6, dtype=torch.long), 2)


def test_down_and_upsample() -> None:
    x = torch.randn(1, 3, 8, 12)
    assert downsample(x).shape == (1, 3, 4, 6)
    assert upsample(x, (16, 24)).shape == (1, 3, 16, 24)
    assert upsample(x, x.shape[-2:]) is x
    assert torch.allclose(downsample(x)[0, 0, 0, 0], x[0, 0, :2, :2].mean())


@pytest.mark.parametrize(
    ("h", "w", "m", "expected"),
    [(40, 56, 16, (48, 64)), (32, 32, 16, (32, 32)), (3, 5, 16, (16, 16)), (1, 1, 8, (8, 8))],
)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "constant"])
def test_pad_and_crop_round_trip(
    h: int, w: int, m: int, expected: tuple[int, int], mode: PadMode
) -> None:
    x = torch.randn(2, 3, h, w)
    padded, size = pad_to_multiple(x, m, mode)
    assert padded.shape[-2:] == expected
    assert size == (h, w)
    assert torch.equal(crop(padded, size), x)


def test_gaussian_taps_keep_unit_variance() -> None:
    taps = torch.tensor(gaussian_taps(1.5))
    assert len(taps) == 2 * 5 + 1 and torch.isclose((taps**2).sum(), torch.tensor(1.0))
    assert torch.equal(taps, taps.flip(0)) and taps.argmax() == 5


def test_smooth_noise_is_unit_variance_noise_correlated_over_sigma() -> None:
    z = torch.randn(4, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    assert smooth_noise(z, 0.0) is z
    s = smooth_noise(z, 2.0)
    assert s.shape == z.shape
    inner = s[..., 8:-8, 8:-8]
    assert inner.std().item() == pytest.approx(1.0, abs=0.05)
    def lag_corr(x: torch.Tensor, d: int) -> float:
        return torch.corrcoef(torch.stack([x[..., :-d].flatten(), x[..., d:].flatten()]))[0, 1].item()

    # Gaussian-blurred white noise: correlation exp(-d^2 / (4 sigma^2)) at lag d
    for d in (1, 2, 4):
        assert lag_corr(inner, d) == pytest.approx(math.exp(-d * d / 16), abs=0.03)
    assert abs(lag_corr(z, 1)) < 0.02


def test_smooth_noise_does_not_depend_on_the_batch() -> None:
    z = torch.randn(16, 3, 40, 36)
    together = smooth_noise(z, 1.5)
    for i in (0, 7, 15):
        assert torch.equal(smooth_noise(z[i:i + 1], 1.5), together[i:i + 1])


def test_smooth_noise_on_sides_too_short_to_reflect() -> None:
    z = torch.randn(1, 3, 3, 5)
    s = smooth_noise(z, 2.0)  # radius 6: replicated borders
    assert s.shape == z.shape and torch.isfinite(s).all()


def test_seed_points_are_a_sparse_hard_core_field_of_unit_second_moment() -> None:
    z = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(0))
    assert seed_points(z, 1) is z
    s = seed_points(z, 15)
    points = s != 0
    assert points.float().mean().item() * 15 * 15 == pytest.approx(1.0, abs=0.1)
    assert (s**2).mean().item() == pytest.approx(1.0, abs=0.1)
    assert torch.equal(s[points], z[points] * seed_scale(15))  # the noise's own values at its maxima
    # every point is the largest of its window: no larger point within 7 px
    peak = torch.nn.functional.max_pool2d(s, 15, stride=1, padding=7)
    assert torch.equal(peak[points], s[points])


def test_seed_points_commute_with_scale_and_keep_zeros() -> None:
    z = torch.randn(4, 3, 40, 50)
    torch.testing.assert_close(seed_points(0.3 * z, 9), 0.3 * seed_points(z, 9))
    assert not seed_points(torch.zeros(1, 3, 20, 20), 9).any()
    together = seed_points(z, 9)
    assert all(torch.equal(seed_points(z[i:i + 1], 9), together[i:i + 1]) for i in range(4))
    assert seed_points(z, 8).shape == z.shape  # even windows too


@pytest.mark.parametrize("window", [2, 4, 9, 25])
@pytest.mark.parametrize("hw", [(37, 53), (5, 4)])
def test_seed_points_find_the_maxima_a_max_pool_finds(window: int, hw: tuple[int, int]) -> None:
    z = torch.randn(2, 3, *hw)
    peak = torch.nn.functional.max_pool2d(z, window, stride=1, padding=window // 2)[..., :hw[0], :hw[1]]
    expected = torch.where((z == peak) & (z > 0), z, torch.zeros_like(z)) * seed_scale(window)
    assert torch.equal(seed_points(z, window), expected)
