"""Baseline generators (pix2pix U-Net, pix2pixHD global generator) and the builders of every
baseline's networks from a :class:`BaselineModelConfig`.

Neither generator takes noise: one mask gives one image (pix2pix kept dropout as its only
noise; here dropout is a training-time regulariser and inference is deterministic).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.baselines.config import BaselineModelConfig, GlobalGeneratorConfig, UNetConfig
from model.config import Norm
from model.nets.blocks import crop, make_norm, pad_to_multiple
from model.nets.discriminator import MultiScaleDiscriminator
from model.nets.segmenter import MiniFCDenseNet, PyramidSegmenter

GENERATOR_ARCHS = ("pix2pix", "pix2pixhd")
SEGMENTER_ARCHS = ("fcdensenet", "fcdensenet-pyramid", "mean-teacher")


def _widths(base: int, cap: int, n: int) -> list[int]:
    return [min(base * 2**i, cap) for i in range(n)]


class UNetGenerator(nn.Module):
    """pix2pix U-Net: ``depth`` Conv4x4 stride-2 downs, mirrored ConvTranspose4x4 ups with
    skip connections, tanh output.

    Args:
        num_classes: K, channels of the one-hot mask.
        cfg: U-Net hyperparameters.
    """

    def __init__(self, num_classes: int, cfg: UNetConfig) -> None:
        super().__init__()
        if cfg.depth < 2:
            raise ValueError(f"U-Net depth must be >= 2, got {cfg.depth}")
        d, w = cfg.depth, _widths(cfg.base_width, cfg.max_width, cfg.depth)
        self.multiple = 2**d
        bias = cfg.norm != "batch"
        self.downs = nn.ModuleList(
            nn.Sequential(
                *([nn.LeakyReLU(0.2)] if i > 0 else []),
                nn.Conv2d(num_classes if i == 0 else w[i - 1], w[i], 4, 2, 1, bias=bias),
                *([make_norm(cfg.norm, w[i])] if 0 < i < d - 1 else []),
            )
            for i in range(d)
        )
        self.ups = nn.ModuleList(self._up(i, w, cfg) for i in range(d))

    @staticmethod
    def _up(i: int, w: list[int], cfg: UNetConfig) -> nn.Sequential:
        d = len(w)
        in_ch = w[i] if i == d - 1 else 2 * w[i]  # innermost: no skip
        if i == 0:
            return nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(in_ch, 3, 4, 2, 1), nn.Tanh())
        layers = [
            nn.ReLU(),
            nn.ConvTranspose2d(in_ch, w[i - 1], 4, 2, 1, bias=cfg.norm != "batch"),
            make_norm(cfg.norm, w[i - 1]),
        ]
        if cfg.dropout > 0 and 1 <= d - 1 - i <= 3:
            layers.append(nn.Dropout(cfg.dropout))
        return nn.Sequential(*layers)

    def forward(self, y: Tensor) -> Tensor:
        """(B, K, H, W) one-hot mask -> (B, 3, H, W) image in [-1, 1]."""
        x, size = pad_to_multiple(y, self.multiple)  # (B, K, H', W')
        skips: list[Tensor] = []
        for down in self.downs:
            x = down(x)
            skips.append(x)  # (B, w_i, H' / 2**(i+1), W' / 2**(i+1))
        x = self.ups[-1](skips[-1])
        for i in range(len(self.ups) - 2, -1, -1):
            x = self.ups[i](torch.cat([x, skips[i]], dim=1))  # (B, w_{i-1} or 3, 2h, 2w)
        return crop(x, size)


class ResnetBlock(nn.Module):
    """pix2pixHD residual block: x + (Conv3x3-Norm-ReLU-Conv3x3-Norm)(x), reflect padding."""

    def __init__(self, ch: int, norm: Norm) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"),
            make_norm(norm, ch),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"),
            make_norm(norm, ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class GlobalGenerator(nn.Module):
    """pix2pixHD global generator: Conv7x7, ``num_down`` Conv3x3 stride-2, residual blocks,
    mirrored ConvTranspose3x3 stride-2, Conv7x7 to RGB, tanh.

    Args:
        num_classes: K, channels of the one-hot mask.
        cfg: global generator hyperparameters.
    """

    def __init__(self, num_classes: int, cfg: GlobalGeneratorConfig) -> None:
        super().__init__()
        w = _widths(cfg.base_width, cfg.max_width, cfg.num_down + 1)
        self.multiple = 2**cfg.num_down

        def act(ch: int) -> list[nn.Module]:
            return [make_norm(cfg.norm, ch), nn.ReLU()]

        layers: list[nn.Module] = [
            nn.Conv2d(num_classes, w[0], 7, padding=3, padding_mode="reflect"),
            *act(w[0]),
        ]
        for i in range(cfg.num_down):
            layers += [nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1), *act(w[i + 1])]
        layers += [ResnetBlock(w[-1], cfg.norm) for _ in range(cfg.num_blocks)]
        for i in range(cfg.num_down, 0, -1):
            layers += [
                nn.ConvTranspose2d(w[i], w[i - 1], 3, 2, 1, output_padding=1),
                *act(w[i - 1]),
            ]
        layers += [nn.Conv2d(w[0], 3, 7, padding=3, padding_mode="reflect"), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, y: Tensor) -> Tensor:
        """(B, K, H, W) one-hot mask -> (B, 3, H, W) image in [-1, 1]."""
        x, size = pad_to_multiple(y, self.multiple)  # (B, K, H', W')
        return crop(self.net(x), size)


def build_generator(cfg: BaselineModelConfig) -> nn.Module | None:
    """The generator of a generation baseline; None for segmentation baselines."""
    if cfg.arch == "pix2pix":
        return UNetGenerator(cfg.num_classes, cfg.unet)
    if cfg.arch == "pix2pixhd":
        return GlobalGenerator(cfg.num_classes, cfg.global_generator)
    return None


def build_discriminator(cfg: BaselineModelConfig) -> MultiScaleDiscriminator | None:
    """Conditional (multi-scale) PatchGAN on (image, one-hot mask) of a generation baseline."""
    return (
        MultiScaleDiscriminator(cfg.num_classes, cfg.discriminator)
        if cfg.arch in GENERATOR_ARCHS
        else None
    )


def build_segmenter(cfg: BaselineModelConfig) -> nn.Module | None:
    """m-FC-DenseNet on RGB (single-scale baselines), the segmenter pyramid, or None."""
    if cfg.arch == "fcdensenet-pyramid":
        return PyramidSegmenter(cfg.pyramid())
    if cfg.arch in SEGMENTER_ARCHS:
        return MiniFCDenseNet(3, cfg.num_classes, cfg.segmenter)
    return None


def check_arch(arch: str) -> None:
    """ValueError naming the baselines when ``arch`` is not one of them."""
    if arch not in GENERATOR_ARCHS + SEGMENTER_ARCHS:
        raise ValueError(
            f"unknown baseline {arch!r}; choose one of "
            f"{', '.join(GENERATOR_ARCHS + SEGMENTER_ARCHS)}"
        )
