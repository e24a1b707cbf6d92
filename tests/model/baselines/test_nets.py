"""Baseline networks: output shapes for several sizes and class counts."""

from __future__ import annotations

import pytest
import torch

from model.baselines.config import GlobalGeneratorConfig, UNetConfig, baseline_preset
from model.baselines.nets import (
    GlobalGenerator,
    UNetGenerator,
    build_discriminator,
    build_generator,
    build_segmenter,
    check_arch,
)
from model.config import replace
from model.nets.blocks import one_hot

SIZES = [(32, 32), (48, 80), (37, 61)]


def _mask(k: int, h: int, w: int) -> torch.Tensor:
    return one_hot(torch.randint(0, k, (2, h, w)), k)  # (2, K, H, W)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("size", SIZES)
def test_unet_shape_and_range(k: int, size: tuple[int, int]) -> None:
    net = UNetGenerator(k, UNetConfig(8, 16, depth=4, dropout=0.5)).eval()
    x = net(_mask(k, *size))
    assert x.shape == (2, 3, *size)
    assert x.abs().max() <= 1.0


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("size", SIZES)
def test_global_generator_shape_and_range(k: int, size: tuple[int, int]) -> None:
    net = GlobalGenerator(k, GlobalGeneratorConfig(8, 32, num_down=2, num_blocks=2)).eval()
    x = net(_mask(k, *size))
    assert x.shape == (2, 3, *size)
    assert x.abs().max() <= 1.0


def test_unet_skips_reach_the_output() -> None:
    """Changing the mask in one corner changes the output there (the skips carry it)."""
    net = UNetGenerator(2, UNetConfig(8, 16, depth=3, dropout=0.0)).eval()
    y = _mask(2, 32, 32)[:1]
    y2 = y.clone()
    y2[:, :, :4, :4] = torch.flip(y2[:, :, :4, :4], dims=[1])
    with torch.no_grad():
        diff = (net(y) - net(y2)).abs()
    assert diff[..., :4, :4].sum() > 0


@pytest.mark.parametrize("arch", ["fcdensenet", "mean-teacher", "fcdensenet-pyramid"])
def test_segmenter_builders(arch: str) -> None:
    cfg = replace(baseline_preset(arch, "tiny").model, num_classes=3)
    net = build_segmenter(cfg)
    assert net is not None and build_generator(cfg) is None and build_discriminator(cfg) is None
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logits = (
            net([x, x[..., ::2, ::2], x[..., ::4, ::4]])[0]
            if arch == "fcdensenet-pyramid"
            else net(x)
        )
    assert logits.shape == (1, 3, 32, 32)


def test_pix2pix_has_one_patchgan_and_pix2pixhd_several() -> None:
    d1 = build_discriminator(replace(baseline_preset("pix2pix", "tiny").model, num_classes=3))
    d2 = build_discriminator(replace(baseline_preset("pix2pixhd", "tiny").model, num_classes=3))
    assert d1 is not None and d2 is not None
    assert len(d1.views) == 1 and len(d2.views) == 2


def test_unknown_arch_is_named() -> None:
    with pytest.raises(ValueError, match="pix2pixhd"):
        check_arch("pix3pix")
