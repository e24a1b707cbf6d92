"""Mini FC-DenseNet (Jegou et al. 2017) and the residual pyramid segmenter (eq. 5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import ModelConfig, SegmenterConfig
from model.nets.blocks import crop, pad_to_multiple, upsample


class DenseLayer(nn.Sequential):
    """BN - ReLU - Conv3x3 (``growth`` channels) - Dropout."""

    def __init__(self, in_ch: int, growth: int, dropout: float) -> None:
        super().__init__(
            nn.BatchNorm2d(in_ch),
            nn.ReLU(),
            nn.Conv2d(in_ch, growth, 3, padding=1),
            nn.Dropout2d(dropout),
        )


class DenseBlock(nn.Module):
    """Dense layers, each fed with the block input and all previous layers' outputs.

    Args:
        in_ch: input channels.
        num_layers: dense layers.
        growth: channels each layer adds.
        dropout: dropout probability.
        keep_input: return cat(input, new features) (down path) or only the new
            features (up path, to keep the up path's width in check).
    """

    def __init__(
        self, in_ch: int, num_layers: int, growth: int, dropout: float, keep_input: bool
    ) -> None:
        super().__init__()
        self.keep_input = keep_input
        self.layers = nn.ModuleList(
            DenseLayer(in_ch + i * growth, growth, dropout) for i in range(num_layers)
        )
        self.out_ch = (in_ch if keep_input else 0) + num_layers * growth

    def forward(self, x: Tensor) -> Tensor:
        new: list[Tensor] = []
        for layer in self.layers:
            out = layer(torch.cat([x, *new], dim=1))  # (B, growth, H, W)
            new.append(out)
        return torch.cat([x, *new] if self.keep_input else new, dim=1)


class TransitionDown(nn.Sequential):
    """BN - ReLU - Conv1x1 - Dropout - MaxPool2x2."""

    def __init__(self, ch: int, dropout: float) -> None:
        super().__init__(
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 1),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2),
        )


def transition_up(ch: int) -> nn.ConvTranspose2d:
    """ConvTranspose3x3 stride 2 that exactly doubles H and W."""
    return nn.ConvTranspose2d(ch, ch, 3, stride=2, padding=1, output_padding=1)


class MiniFCDenseNet(nn.Module):
    """FC-DenseNet: conv, dense blocks with transitions down, bottleneck, mirrored up path.

    Inputs are padded to a multiple of ``2 ** len(down_layers)`` and the logits cropped
    back, so any H, W works.

    Args:
        in_ch: input channels.
        num_classes: K, output logit channels.
        cfg: segmenter hyperparameters.
    """

    def __init__(self, in_ch: int, num_classes: int, cfg: SegmenterConfig) -> None:
        super().__init__()
        g, p = cfg.growth_rate, cfg.dropout
        self.multiple = 2 ** len(cfg.down_layers)
        self.first = nn.Conv2d(in_ch, cfg.first_width, 3, padding=1)
        ch = cfg.first_width
        skips: list[int] = []
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        for n in cfg.down_layers:
            block = DenseBlock(ch, n, g, p, keep_input=True)
            ch = block.out_ch
            skips.append(ch)
            self.down.append(block)
            self.pools.append(TransitionDown(ch, p))
        self.bottleneck = DenseBlock(ch, cfg.bottleneck_layers, g, p, keep_input=False)
        ch = self.bottleneck.out_ch
        self.ups = nn.ModuleList()
        self.up = nn.ModuleList()
        for i, (n, skip) in enumerate(zip(reversed(cfg.down_layers), reversed(skips), strict=True)):
            last = i == len(skips) - 1
            self.ups.append(transition_up(ch))
            block = DenseBlock(ch + skip, n, g, p, keep_input=last)
            ch = block.out_ch
            self.up.append(block)
        self.last = nn.Conv2d(ch, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> logits (B, K, H, W)."""
        x, size = pad_to_multiple(x, self.multiple)  # (B, C_in, H', W')
        x = self.first(x)
        skips: list[Tensor] = []
        for block, pool in zip(self.down, self.pools, strict=True):
            x = block(x)
            skips.append(x)
            x = pool(x)  # (B, C, H / 2, W / 2)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.ups, self.up, reversed(skips), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))  # up: (B, C, 2H, 2W)
        return crop(self.last(x), size)  # (B, K, H, W)


class ScaleSegmenter(nn.Module):
    """S_n: a MiniFCDenseNet on cat(image, softmax(coarser logits), z).

    The coarsest scale sees a uniform 1/K map in place of the coarser prediction; finer
    scales are residual: ``prev_up_logits + net(...)``.

    Args:
        num_classes: K.
        cfg: segmenter hyperparameters.
        coarsest: whether this is S_N.
    """

    def __init__(self, num_classes: int, cfg: SegmenterConfig, coarsest: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.coarsest = coarsest
        self.noise_channels = cfg.noise_channels
        self.net = MiniFCDenseNet(3 + num_classes + cfg.noise_channels, num_classes, cfg)

    def forward(self, image: Tensor, prev_up_logits: Tensor | None, z: Tensor) -> Tensor:
        """Segment one scale.

        Args:
            image: (B, 3, H, W) in [-1, 1].
            prev_up_logits: (B, K, H, W) coarser logits upsampled; None at the coarsest.
            z: (B, Cs, H, W) input noise (zeros at inference).

        Returns:
            (B, K, H, W) logits.
        """
        if self.coarsest != (prev_up_logits is None):
            raise ValueError("the coarsest segmenter takes no coarser logits; finer ones need them")
        b, _, h, w = image.shape
        if prev_up_logits is None:
            probs = image.new_full((b, self.num_classes, h, w), 1.0 / self.num_classes)
        else:
            probs = F.softmax(prev_up_logits, dim=1)  # (B, K, H, W)
        logits = self.net(torch.cat([image, probs, z], dim=1))
        return logits if prev_up_logits is None else prev_up_logits + logits


class PyramidSegmenter(nn.Module):
    """S_0..S_N indexed by n (0 finest).

    Args:
        cfg: model config.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_scales = cfg.num_scales
        last = cfg.num_scales - 1
        self.scales = nn.ModuleList(
            ScaleSegmenter(cfg.num_classes, cfg.segmenter, coarsest=n == last)
            for n in range(cfg.num_scales)
        )

    def noise_like(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training noise ``noise_std * N(0, 1)`` for an image (B, 3, H, W) -> (B, Cs, H, W)."""
        b, _, h, w = image.shape
        shape = (b, self.cfg.segmenter.noise_channels, h, w)
        z = torch.randn(shape, generator=generator, device=image.device, dtype=image.dtype)
        return self.cfg.segmenter.noise_std * z

    def forward_scale(
        self, n: int, image: Tensor, prev_logits_up: Tensor | None, z: Tensor | None = None
    ) -> Tensor:
        """Logits of scale n.

        Args:
            n: scale index.
            image: (B, 3, H, W) image of scale n.
            prev_logits_up: (B, K, h, w) logits of scale n + 1, upsampled here to (H, W)
                when their size differs; None at n = N.
            z: (B, Cs, H, W) noise; None means zeros.

        Returns:
            (B, K, H, W) logits.
        """
        if z is None:
            b, _, h, w = image.shape
            z = image.new_zeros((b, self.cfg.segmenter.noise_channels, h, w))
        if prev_logits_up is not None:
            prev_logits_up = upsample(prev_logits_up, image.shape[-2:])  # (B, K, H, W)
        return self.scales[n](image, prev_logits_up, z)

    def forward(
        self,
        xs: Sequence[Tensor | None],
        zs: Sequence[Tensor | None] | None = None,
        stop_at: int = 0,
    ) -> list[Tensor | None]:
        """Run from the coarsest scale N down to ``stop_at``.

        Args:
            xs: images indexed by n, (B, 3, H_n, W_n); entries below ``stop_at`` may be None.
            zs: noise indexed by n; None (or None entries) means zeros.
            stop_at: finest scale to compute.

        Returns:
            Logits indexed by n, (B, K, H_n, W_n); None for n < stop_at.
        """
        zs = [None] * self.num_scales if zs is None else zs
        if len(xs) != self.num_scales or len(zs) != self.num_scales:
            raise ValueError(
                f"expected {self.num_scales} images and noise maps (one per scale), "
                f"got {len(xs)} and {len(zs)}"
            )
        if not 0 <= stop_at < self.num_scales:
            raise ValueError(f"stop_at must be in 0..{self.num_scales - 1}, got {stop_at}")
        out: list[Tensor | None] = [None] * self.num_scales
        prev: Tensor | None = None
        for n in range(self.num_scales - 1, stop_at - 1, -1):
            x = xs[n]
            if x is None:
                raise ValueError(f"image of scale {n} is missing")
            prev = self.forward_scale(n, x, prev, zs[n])
            out[n] = prev
        return out
