"""The mask critic: a small dilated CNN that segments images at one scale's resolution.

Training only (never served): it is trained on real pairs at the start of a scale, then
frozen, and G_n pays its cross-entropy against the mask on G_n's image (``LossConfig.mask``),
so the generated image must read as its mask to a segmenter that has only seen real tissue.
A plain stack of dilated convs, a different architecture from the FC-DenseNets of S_n and
of the evaluation's independent judge, so G is not tuned against the network that judges it.
"""

from __future__ import annotations

from torch import Tensor, nn

from model.config import CriticConfig


class MaskCritic(nn.Module):
    """Conv3x3 - LeakyReLU, then one dilated Conv3x3 - LeakyReLU per dilation, then a 1x1 conv
    to class logits; zero padding keeps the size (any input side works).

    Args:
        num_classes: K, the logits' channels.
        cfg: width and dilations.
    """

    def __init__(self, num_classes: int, cfg: CriticConfig) -> None:
        super().__init__()
        if cfg.width < 1 or not cfg.dilations or min(cfg.dilations) < 1:
            raise ValueError(f"critic needs width >= 1 and dilations >= 1, got {cfg.width} and {cfg.dilations}")
        layers: list[nn.Module] = [nn.Conv2d(3, cfg.width, 3, padding=1), nn.LeakyReLU(0.2)]
        for d in cfg.dilations:
            layers += [nn.Conv2d(cfg.width, cfg.width, 3, padding=d, dilation=d), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(cfg.width, num_classes, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, h, w) image in [-1, 1] -> (B, K, h, w) logits."""
        return self.net(x)

    @staticmethod
    def receptive_field(cfg: CriticConfig) -> int:
        """Side of the input window one output pixel sees."""
        return 1 + 2 * (1 + sum(cfg.dilations))
