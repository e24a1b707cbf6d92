"""Shared blocks: norms, conv block, one-hot, resampling, padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.config import Norm
from model.nets.blocks import (
    ConvBlock,
    PadMode,
    crop,
    downsample,
    make_norm,
    one_hot,
    pad_to_multiple,
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
