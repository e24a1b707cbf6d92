"""Supervised segmentation baselines: the single-scale m-FC-DenseNet and the segmenter
pyramid trained coarse to fine on real pairs only (the paper's "m-FC DenseNet + pyramid":
our S_n without G_n, D_n or synthetic pairs). Cross-entropy only.
"""

from __future__ import annotations

import torch
from torch import nn

from model.baselines.context import Context
from model.baselines.nets import build_segmenter
from model.nets.segmenter import PyramidSegmenter
from model.tensors import image_pyramid, mask_pyramid
from model.training import losses
from model.training.steps import update


class SegmenterRunner:
    """m-FC-DenseNet on whole training tiles.

    Args:
        ctx: the run's context.
    """

    num_scales = 1

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        net = build_segmenter(ctx.model)
        assert net is not None
        self.net: nn.Module = net.to(ctx.device).train()
        self.opt = ctx.adam(self.net, ctx.train.lr)

    def step(self, rank: int, step: int) -> dict[str, float]:
        x, labels = self.ctx.batch()  # (B, 3, T, T), (B, T, T)
        return {"s_ce": update(self.opt, losses.cross_entropy(self.net(x), labels))}

    def end_scale(self, rank: int) -> None:
        """Single scale: nothing to freeze."""

    def networks(self) -> tuple[nn.Module | None, nn.Module | None]:
        return None, self.net


class PyramidRunner:
    """S_N .. S_0 trained in turn; finished scales are frozen and feed their logits down.

    Args:
        ctx: the run's context.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.net = PyramidSegmenter(ctx.model.pyramid()).to(ctx.device)
        self.num_scales = self.net.num_scales
        self.opt: torch.optim.Optimizer | None = None

    def step(self, rank: int, step: int) -> dict[str, float]:
        n = self.num_scales - 1 - rank
        if self.opt is None:
            self.net.scales[n].train()
            self.opt = self.ctx.adam(self.net.scales[n], self.ctx.train.lr)
        x, labels = self.ctx.batch()  # (B, 3, T, T), (B, T, T)
        xs = image_pyramid(x, self.num_scales)  # indexed by n
        _, labs = mask_pyramid(labels, self.ctx.model.num_classes, self.num_scales)
        prev = None
        if n < self.num_scales - 1:
            with torch.no_grad():
                prev = self.net(xs, None, stop_at=n + 1)[n + 1]  # (B, K, H_{n+1}, W_{n+1})
        seg, (b, _, h, w) = self.ctx.model.segmenter, xs[n].shape
        z = seg.noise_std * self.ctx.randn_like(xs[n].new_empty(b, seg.noise_channels, h, w))
        logits = self.net.forward_scale(n, xs[n], prev, z)  # (B, K, H_n, W_n)
        return {"s_ce": update(self.opt, losses.cross_entropy(logits, labs[n]))}

    def end_scale(self, rank: int) -> None:
        n = self.num_scales - 1 - rank
        self.net.scales[n].eval().requires_grad_(False)
        self.opt = None

    def networks(self) -> tuple[nn.Module | None, nn.Module | None]:
        return None, self.net
