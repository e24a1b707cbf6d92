"""Conditional multi-view PatchGAN (pix2pixHD) returning logits and intermediate features."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import DiscriminatorConfig, ModelConfig, Norm, WeightNorm
from model.nets.blocks import make_norm

KERNEL = 4
PAD = math.ceil((KERNEL - 1) / 2)  # pix2pixHD: 2, so a side never shrinks below 1


class PatchDiscriminator(nn.Module):
    """pix2pixHD NLayerDiscriminator: ``num_layers`` k4 s2 convs, a k4 s1 conv, a k4 s1 head.

    Every layer but the head is Conv - Norm (not on the first) - LeakyReLU(0.2); the
    output of each is returned as a feature for feature matching.

    Args:
        in_ch: input channels (image + one-hot mask).
        cfg: discriminator hyperparameters.
    """

    def __init__(self, in_ch: int, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        if cfg.num_layers < 1:
            raise ValueError(f"discriminator num_layers must be >= 1, got {cfg.num_layers}")
        widths = [min(cfg.base_width * 2**i, cfg.max_width) for i in range(cfg.num_layers + 1)]
        strides = [2] * cfg.num_layers + [1]
        layers: list[nn.Module] = []
        prev = in_ch
        if cfg.weight_norm not in ("none", "spectral"):
            raise ValueError(f"unknown discriminator weight_norm {cfg.weight_norm!r}; choose none or spectral")
        for i, (width, stride) in enumerate(zip(widths, strides, strict=True)):
            layer = _layer(prev, width, stride, "none" if i == 0 else cfg.norm, cfg.weight_norm)
            layers.append(nn.Sequential(Blur(prev), *layer) if cfg.antialias and stride == 2 else layer)
            prev = width
        self.layers = nn.ModuleList(layers)
        self.head = _weight_norm(nn.Conv2d(prev, 1, KERNEL, stride=1, padding=PAD), cfg.weight_norm)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Patch logits and every intermediate layer's output.

        Args:
            x: (B, C, H, W).

        Returns:
            logits (B, 1, h, w) and ``num_layers + 1`` feature maps.
        """
        features: list[Tensor] = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.head(x), features


def _layer(in_ch: int, out_ch: int, stride: int, norm: Norm, weight_norm: WeightNorm) -> nn.Sequential:
    conv = nn.Conv2d(in_ch, out_ch, KERNEL, stride=stride, padding=PAD, bias=norm != "batch")
    return nn.Sequential(_weight_norm(conv, weight_norm), make_norm(norm, out_ch), nn.LeakyReLU(0.2, inplace=True))


class Blur(nn.Module):
    """Depthwise 3x3 binomial blur ([1, 2, 1] outer product / 16), edges replicated: the
    low-pass before a strided conv (anti-aliased downsampling). No parameters, nothing in
    the state dict."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :]) / 16
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        kernel = self.kernel.to(dtype=x.dtype)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=self.channels)


def _weight_norm(conv: nn.Conv2d, kind: WeightNorm) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(conv) if kind == "spectral" else conv


class MultiScaleDiscriminator(nn.Module):
    """D_n: identical PatchGANs on views at 1x, 1/2, 1/4 ... of the (image, mask) pair.

    Args:
        num_classes: K, channels of the one-hot mask.
        cfg: discriminator hyperparameters.
    """

    def __init__(self, num_classes: int, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        if cfg.num_views < 1:
            raise ValueError(f"discriminator num_views must be >= 1, got {cfg.num_views}")
        self.num_classes = num_classes
        #: Whether each sample's output depends on that sample alone and a forward pass
        #: changes nothing (no batch statistics, no spectral norm's power iteration): then
        #: several batches of pairs can share one call and get the values of one call each.
        self.per_sample = cfg.norm != "batch" and cfg.weight_norm == "none"
        self.views = nn.ModuleList(
            PatchDiscriminator(3 + num_classes, cfg) for _ in range(cfg.num_views)
        )

    def forward(self, image: Tensor, mask: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        """Judge an image-mask pair at every view.

        Args:
            image: (B, 3, H, W) in [-1, 1].
            mask: (B, K, H, W) one-hot or soft mask (or softmax of segmenter logits).

        Returns:
            One (logits, features) per view, finest view first.
        """
        _check_size(image.shape[-2:], len(self.views))
        x = torch.cat([image, mask], dim=1)  # (B, 3 + K, H, W)
        out = []
        for i, view in enumerate(self.views):
            if i > 0:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(view(x))
        return out


def _check_size(size: torch.Size, num_views: int) -> None:
    h, w = int(size[0]), int(size[1])
    for _ in range(num_views - 1):
        h, w = (h + 1) // 2, (w + 1) // 2  # side after avg_pool2d(3, 2, 1)
    if min(h, w) < 2:
        raise ValueError(
            f"a {size[0]}x{size[1]} image is too small for {num_views} discriminator views; "
            f"use larger tiles or fewer scales or views"
        )


class PyramidDiscriminator(nn.Module):
    """D_0..D_N indexed by n (0 finest), one MultiScaleDiscriminator each.

    Args:
        cfg: model config.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            MultiScaleDiscriminator(cfg.num_classes, cfg.discriminator)
            for _ in range(cfg.num_scales)
        )

    def __getitem__(self, n: int) -> MultiScaleDiscriminator:
        return self.scales[n]  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.scales)

    def forward(self, n: int, image: Tensor, mask: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        """D_n on an image-mask pair of scale n (see :meth:`MultiScaleDiscriminator.forward`)."""
        return self.scales[n](image, mask)
