"""Tiled inference of conv stacks: the same pixels as the untiled stack."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.nets.blocks import ConvBlock
from model.nets.tiling import halo, run_pieces, run_tiled, tileable


def _stack(norm: str = "batch", last_kernel: int = 3) -> nn.Sequential:
    torch.manual_seed(0)
    blocks = [ConvBlock(5 if i == 0 else 8, 8, norm) for i in range(3)]  # type: ignore[arg-type]
    last = nn.Conv2d(8, 3, last_kernel, padding=last_kernel // 2, padding_mode="reflect")
    stack = nn.Sequential(*blocks, last).eval()
    for m in stack.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return stack


@pytest.mark.parametrize("hw", [(64, 64), (70, 45), (33, 100), (9, 6)])
@pytest.mark.parametrize("tile", [1, 5, 16, 32, 500])
def test_tiled_equals_untiled(hw: tuple[int, int], tile: int) -> None:
    stack = _stack()
    x = torch.randn(2, 5, *hw)
    with torch.no_grad():
        torch.testing.assert_close(run_tiled(stack, x, tile), stack(x), rtol=0, atol=1e-5)


def test_wide_kernels_and_channels_last_keep_values_and_layout() -> None:
    stack = _stack(last_kernel=7)
    assert halo(stack) == 3 + 3
    x = torch.randn(1, 5, 40, 52).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = run_tiled(stack, x, 16)
        torch.testing.assert_close(out, stack(x), rtol=0, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_what_cannot_be_tiled() -> None:
    assert tileable(_stack())
    assert not tileable(_stack("instance"))  # statistics over the whole image
    assert not tileable(_stack().train())  # batch statistics
    assert not tileable(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)))  # zero padding
    assert not tileable(nn.Sequential(nn.Conv2d(3, 3, 3, stride=2, padding=1, padding_mode="reflect")))
    assert not tileable(nn.Sequential(nn.Upsample(scale_factor=2)))


def test_tile_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tile must be >= 1"):
        run_tiled(_stack(), torch.randn(1, 5, 8, 8), 0)


def _pool_net() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(2)).eval()


@pytest.mark.parametrize("hw", [(32, 48), (46, 30), (2, 8)])
@pytest.mark.parametrize("tile", [2, 6, 16, 64])
def test_pieces_equal_the_whole_at_full_and_half_resolution(hw: tuple[int, int], tile: int) -> None:
    net = _pool_net()
    x = torch.randn(2, 3, *hw)

    def fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = net[:3](t)
        return full, net[3](full)

    with torch.no_grad():
        full, half = run_pieces(fn, [(x, 1)], hw, tile, halo=2, out_scales=(1, 2))
        torch.testing.assert_close(full, net[:3](x), rtol=0, atol=1e-6)
        torch.testing.assert_close(half, net(x), rtol=0, atol=1e-6)
    assert half.is_contiguous(memory_format=torch.channels_last)


def test_pieces_need_a_halo_as_wide_as_the_reach() -> None:
    net = _pool_net()[:3]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        short = run_pieces(lambda t: (net(t),), [(x, 1)], (32, 32), 8, halo=1, out_scales=(1,))[0]
        assert not torch.allclose(short, net(x), atol=1e-4)


def test_pieces_reject_odd_tiles_at_half_resolution() -> None:
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="even tile"):
        run_pieces(lambda t: (t, t[..., ::2, ::2]), [(x, 1)], (8, 8), 3, 2, (1, 2))
