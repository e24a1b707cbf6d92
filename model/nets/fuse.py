"""Inference-only rewrites that keep the function and cut memory passes.

BatchNorm (eval) folds into the preceding convolution, LeakyReLU runs in place, the
weights go to channels-last, which oneDNN (CPU) and cuDNN run markedly faster, and
reflect-padded convolutions stop copying their whole input into a padded tensor: they
run with the convolution's own zero padding and recompute the thin border, the only part
that differs. Outputs match the unfused network to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.nets.blocks import ConvBlock
from model.nets.generator import MaskConcatStack, ScaleGenerator
from model.nets.tiling import same_reflect_conv, tileable

#: Output tile side of tiled generator scales: activations of a 256x256 tile stay in the
#: CPU's caches (measured fastest with ``histosynth bench generate --tile``).
TILE = 256


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv whose output equals ``bn(conv(x))`` with the BN's running statistics."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.to(conv.weight.device)


class BorderReflectConv2d(nn.Conv2d):
    """A stride-1 'same' conv with reflect padding, computed without padding its input.

    The interior of ``conv(reflect_pad(x))`` equals ``conv(zero_pad(x))``; only the outer
    ``p`` rows and columns differ. They are recomputed from strips ``2p`` wide, a few
    percent of the work, instead of copying the whole input (a full memory pass per layer,
    about a third of a 32-channel conv's time on a CPU). Small inputs take the plain path.
    """

    #: Below this many output pixels the plain padded path is used (strip calls cost more).
    MIN_PIXELS = 64 * 64

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> BorderReflectConv2d:
        """The same weights and bias as ``conv`` (a stride-1 reflect conv with padding k//2)."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, 1, conv.padding,
                  bias=conv.bias is not None, padding_mode="reflect")
        new.load_state_dict(conv.state_dict())
        return new.to(conv.weight.device)

    @staticmethod
    def applies_to(conv: nn.Module) -> bool:
        """Whether ``conv`` is a plain stride-1 reflect conv keeping the spatial size."""
        return type(conv) is nn.Conv2d and same_reflect_conv(conv) and conv.padding[0] > 0

    def forward(self, x: Tensor) -> Tensor:
        p = int(self.padding[0])  # type: ignore[index]
        h, w = x.shape[-2:]
        if h * w < self.MIN_PIXELS or min(h, w) < 2 * p:
            return super().forward(x)
        out = F.conv2d(x, self.weight, self.bias, padding=p)  # zero padding, no copy
        out[:, :, :p] = self._strip(x[:, :, : 2 * p])[:, :, :p]
        out[:, :, -p:] = self._strip(x[:, :, -2 * p :])[:, :, -p:]
        out[..., :p] = self._strip(x[..., : 2 * p])[..., :p]
        out[..., -p:] = self._strip(x[..., -2 * p :])[..., -p:]
        return out

    def _strip(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, self._reversed_padding_repeated_twice, mode="reflect"),
                        self.weight, self.bias)


@torch.no_grad()
def fuse_for_inference(module: nn.Module, channels_last: bool = True, tile: int | None = None) -> nn.Module:
    """Fold BN into convs inside every ConvBlock, in-place activations, channels-last weights,
    reflect convs without a padded copy (:class:`BorderReflectConv2d`) and, with ``tile``,
    generator scales that run their conv stack tile by tile (:mod:`model.nets.tiling`)."""
    module.eval()
    for block in module.modules():
        if isinstance(block, ConvBlock) and isinstance(block[1], nn.BatchNorm2d):
            block[0] = fold_batchnorm(block[0], block[1])
            block[1] = nn.Identity()
        if isinstance(block, nn.LeakyReLU):
            block.inplace = True
    set_tile(module, tile)
    _replace_reflect_convs(module)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return module


def set_tile(module: nn.Module, tile: int | None) -> None:
    """Tile side of every generator scale in ``module`` whose stack allows it (None/0: off)."""
    if tile is not None and tile < 0:
        raise ValueError(f"tile must be >= 0, got {tile}")
    for scale in module.modules():
        if isinstance(scale, ScaleGenerator):
            phi = scale.phi
            ok = phi.tileable() if isinstance(phi, MaskConcatStack) else tileable(phi)
            scale.tile = tile if tile and ok else None


@contextmanager
def tiling_off(module: nn.Module) -> Iterator[None]:
    """Run ``module``'s generator scales untiled inside the block (e.g. to count conv FLOPs
    with hooks, which the tiled path bypasses); the tiles come back after it."""
    scales = [m for m in module.modules() if isinstance(m, ScaleGenerator)]
    saved = [m.tile for m in scales]
    for m in scales:
        m.tile = None
    try:
        yield
    finally:
        for m, t in zip(scales, saved, strict=True):
            m.tile = t


def _replace_reflect_convs(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if BorderReflectConv2d.applies_to(child):
            setattr(module, name, BorderReflectConv2d.from_conv(child))  # type: ignore[arg-type]
        else:
            _replace_reflect_convs(child)
