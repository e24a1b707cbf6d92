"""Inference rewrites (BN folding, channels-last, border-only reflect, tiling) keep the output."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from model.config import GeneratorConfig, ModelConfig
from model.nets.blocks import one_hot
from model.nets.fuse import BorderReflectConv2d, fuse_for_inference, set_tile, tiling_off
from model.nets.generator import PyramidGenerator, ScaleGenerator


def _generator(**options: str) -> PyramidGenerator:
    torch.manual_seed(0)
    gen = GeneratorConfig(base_width=8, max_width=8, width_doubling=4, num_blocks=3, **options)  # type: ignore[arg-type]
    g = PyramidGenerator(ModelConfig(num_classes=3, num_scales=3, generator=gen)).eval()
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    return g


def _run(g: PyramidGenerator, h: int, w: int) -> torch.Tensor:
    torch.manual_seed(1)
    ys, zs = [], []
    y = one_hot(torch.randint(0, 3, (2, h, w)), 3)
    for n in range(g.num_scales):
        ys.append(y)
        zs.append(g.noise_like(n, y))
        y = torch.nn.functional.avg_pool2d(y, 2)
    with torch.no_grad():
        return g(ys, zs)[0]


@pytest.mark.parametrize("tile", [None, 24])
@pytest.mark.parametrize("options", [{}, {"mask_input": "concat", "norm": "none", "output": "tanh"},
                                     {"mask_input": "concat"},
                                     {"mask_input": "concat", "norm": "none", "dilations": (1, 2, 4)},
                                     {"mask_input": "concat", "norm": "none", "noise_blur": (2.0, 1.0)},
                                     {"mask_input": "concat", "norm": "none", "noise_blur": (1.5,), "noise_seeds": (7,),
                                      "dilations": (1, 2, 4), "dilated_finest": 1}])
def test_fused_generator_matches_the_trained_one(tile: int | None, options: dict[str, str]) -> None:
    g = _generator(**options)
    fused = fuse_for_inference(copy.deepcopy(g), tile=tile)
    assert all(m.tile == tile for m in fused.modules() if isinstance(m, ScaleGenerator))
    assert any(isinstance(m, BorderReflectConv2d) for m in fused.modules())
    torch.testing.assert_close(_run(fused, 96, 80), _run(g, 96, 80), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kernel", [3, 7])
@pytest.mark.parametrize("hw", [(70, 90), (64, 64), (100, 65), (8, 8)])
def test_border_reflect_conv_equals_reflect_padding(kernel: int, hw: tuple[int, int]) -> None:
    conv = nn.Conv2d(5, 6, kernel, padding=kernel // 2, padding_mode="reflect")
    fast = BorderReflectConv2d.from_conv(conv)
    for x in (torch.randn(2, 5, *hw), torch.randn(2, 5, *hw).contiguous(memory_format=torch.channels_last)):
        with torch.no_grad():
            torch.testing.assert_close(fast(x), conv(x), rtol=0, atol=1e-5)


def test_border_reflect_conv_is_not_zero_padding() -> None:
    """Guards the test above: the two paddings differ on the border, so a match means something."""
    conv = nn.Conv2d(5, 6, 3, padding=1, padding_mode="reflect")
    x = torch.randn(1, 5, 80, 80)
    with torch.no_grad():
        zero = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
        assert (zero - conv(x)).abs().max() > 0.1


def test_only_stride_one_same_reflect_convs_are_rewritten() -> None:
    assert BorderReflectConv2d.applies_to(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"))
    assert not BorderReflectConv2d.applies_to(nn.Conv2d(3, 3, 3, padding=1))
    assert not BorderReflectConv2d.applies_to(nn.Conv2d(3, 3, 3, stride=2, padding=1, padding_mode="reflect"))
    assert not BorderReflectConv2d.applies_to(nn.Conv2d(3, 3, 1, padding_mode="reflect"))


def test_set_tile_and_tiling_off() -> None:
    g = fuse_for_inference(_generator(), tile=32)
    with tiling_off(g):
        assert all(m.tile is None for m in g.modules() if isinstance(m, ScaleGenerator))
    assert all(m.tile == 32 for m in g.modules() if isinstance(m, ScaleGenerator))
    set_tile(g, 0)
    assert all(m.tile is None for m in g.modules() if isinstance(m, ScaleGenerator))
    with pytest.raises(ValueError, match="tile must be >= 0"):
        set_tile(g, -1)
