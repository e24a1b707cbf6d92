"""Tiled inference of a stack of 'same' convolutions, exact at every pixel.

A generator scale's Phi is a stack of 3x3 reflect-padded convolutions with pointwise layers
between them (BatchNorm folded, LeakyReLU). On a large image every layer streams a
full-resolution, 32-channel activation through memory (128 MiB at 1024x1024), and the CPU
runs the convolutions at a fraction of the speed it reaches when an activation fits its
caches. Here the stack runs tile by tile: each tile is cut with a halo as wide as the
stack's receptive field, every convolution runs unpadded ('valid') on interior sides and
reflect-padded on the image's own borders, so every output pixel equals the untiled one.
Peak memory becomes a few tiles' activations instead of whole-image ones.

:func:`run_pieces` does the same for any translation-equivariant function of several
inputs at full or half resolution whose convs zero-pad (the segmenter's levels): each
piece runs on a crop with a halo and only its centre is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Layers that act on each pixel alone (safe to run on a tile).
POINTWISE = (nn.Identity, nn.LeakyReLU, nn.ReLU, nn.Tanh, nn.BatchNorm2d, nn.Dropout)


def tileable(stack: nn.Sequential) -> bool:
    """Whether ``stack`` holds only stride-1 'same' reflect convs and pointwise layers.

    BatchNorm counts as pointwise in eval mode only; InstanceNorm (image statistics) does not.
    Other module types (e.g. a stack that concatenates the mask to every conv) never are.
    """
    if type(stack) is not nn.Sequential:
        return False
    for layer in _layers(stack):
        if isinstance(layer, nn.Conv2d):
            if not same_reflect_conv(layer):
                return False
        elif not isinstance(layer, POINTWISE) or (isinstance(layer, nn.BatchNorm2d) and layer.training):
            return False
    return True


def halo(stack: nn.Sequential) -> int:
    """Pixels each output depends on beyond itself: the sum of the convs' paddings."""
    return sum(int(layer.padding[0]) for layer in _layers(stack) if isinstance(layer, nn.Conv2d))


def run_tiled(stack: nn.Sequential, x: Tensor, tile: int) -> Tensor:
    """``stack(x)`` computed on ``tile`` x ``tile`` output tiles (same values).

    Args:
        stack: a :func:`tileable` stack of layers.
        x: (B, C, H, W) input.
        tile: output tile side in pixels.

    Returns:
        (B, C_out, H, W), in the input's memory format.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    layers = _layers(stack)
    h, w = x.shape[-2:]
    reach = halo(stack)
    out: Tensor | None = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            box = (max(0, y0 - reach), min(h, y1 + reach), max(0, x0 - reach), min(w, x1 + reach))
            part, (fy0, _, fx0, _) = _run_region(layers, x[:, :, box[0]:box[1], box[2]:box[3]], box, (h, w))
            if out is None:
                out = _empty(part, (x.shape[0], part.shape[1], h, w), _format_of(x))
            out[:, :, y0:y1, x0:x1] = part[:, :, y0 - fy0 : y1 - fy0, x0 - fx0 : x1 - fx0]
    assert out is not None
    return out


def run_tiled_local(fn: Callable[[Tensor], Tensor], x: Tensor, tile: int, reach: int) -> Tensor:
    """``fn(x)`` computed on ``tile`` x ``tile`` output tiles, for any ``fn`` whose output pixel
    depends only on inputs within ``reach`` pixels (e.g. ``reach`` stacked 3x3 'same' convs
    with pointwise layers and concatenations between them).

    Each tile runs with a halo of ``reach`` pixels and keeps its centre: pixels that the
    halo's padded edge reaches are cut off, and on the image's own borders the tile's
    padding is the image's. Exact at every pixel; simpler than :func:`run_tiled` but it
    recomputes the halo.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    h, w = x.shape[-2:]
    out: Tensor | None = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            by0, bx0 = max(0, y0 - reach), max(0, x0 - reach)
            part = fn(x[:, :, by0:min(h, y1 + reach), bx0:min(w, x1 + reach)])
            if out is None:
                out = _empty(part, (x.shape[0], part.shape[1], h, w), _format_of(x))
            out[:, :, y0:y1, x0:x1] = part[:, :, y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    assert out is not None
    return out


def _run_region(layers: list[nn.Module], x: Tensor, box: tuple[int, int, int, int],
                size: tuple[int, int]) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Run the layers on the region ``box`` (y0, y1, x0, x1) of an image of ``size``.

    Sides on the image border are reflect-padded per conv; interior sides shrink.
    Returns the output and the region (y0, y1, x0, x1) it covers.
    """
    y0, y1, x0, x1 = box
    h, w = size
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            p = int(layer.padding[0])
            pads = (p if x0 == 0 else 0, p if x1 == w else 0, p if y0 == 0 else 0, p if y1 == h else 0)
            if any(pads):
                x = F.pad(x, pads, mode="reflect")
            x = F.conv2d(x, layer.weight, layer.bias)
            y0, y1 = y0 + (0 if y0 == 0 else p), y1 - (0 if y1 == h else p)
            x0, x1 = x0 + (0 if x0 == 0 else p), x1 - (0 if x1 == w else p)
        else:
            x = layer(x)
    return x, (y0, y1, x0, x1)


def _layers(stack: nn.Module) -> list[nn.Module]:
    flat: list[nn.Module] = []
    for layer in stack.children():
        if isinstance(layer, nn.Sequential):
            flat.extend(_layers(layer))
        else:
            flat.append(layer)
    return flat


def same_reflect_conv(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is a stride-1 reflect conv with a square odd kernel keeping the size."""
    kh, kw = conv.kernel_size
    return (
        conv.padding_mode == "reflect" and conv.stride == (1, 1) and conv.dilation == (1, 1)
        and conv.groups == 1 and isinstance(conv.padding, tuple)
        and conv.padding == (kh // 2, kw // 2) and kh == kw and kh % 2 == 1
    )


def _empty(like: Tensor, shape: tuple[int, ...], fmt: torch.memory_format) -> Tensor:
    """An uninitialised tensor of ``like``'s dtype and device, allocated in ``fmt`` directly
    (``new_empty(...).contiguous(memory_format=...)`` would copy the whole stitched output once)."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)


def _format_of(x: Tensor) -> torch.memory_format:
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


#: A tensor handed to :func:`run_pieces` and its downscale (1 or 2) against the piece grid.
Source = tuple[Tensor, int]


def run_pieces(fn: Callable[..., Sequence[Tensor]], sources: Sequence[Source], size: tuple[int, int],
               tile: int, halo: int, out_scales: Sequence[int]) -> list[Tensor]:
    """``fn(*sources)`` computed on ``tile`` x ``tile`` pieces of a grid of ``size`` (same values).

    Each piece is cut with ``halo`` grid pixels of context (clipped at the image border) from
    every source, ``fn`` runs on the crops and the pieces' centres are stitched. Exact when
    ``fn`` is translation-equivariant (zero-padded convs, pooling, bilinear upsampling by 2),
    its outputs near a crop edge that is not the image border differ from the untiled ones
    by fewer than ``halo`` pixels, and sources or outputs at half resolution (downscale 2)
    stay aligned: ``tile`` and ``halo`` even and ``size`` even then.

    Args:
        fn: takes the crops, returns one (B, C, h / d, w / d) tensor per ``out_scales`` entry d.
        sources: (B, C, H / d, W / d) tensors with their downscale d.
        size: (H, W) of the grid.
        tile: piece side in grid pixels.
        halo: context in grid pixels.
        out_scales: downscale of each output.

    Returns:
        The outputs, (B, C, H / d, W / d) each, channels-last.
    """
    h, w = size
    if tile < 1 or halo < 0:
        raise ValueError(f"tile must be >= 1 and halo >= 0, got {tile} and {halo}")
    if 2 in (*out_scales, *(d for _, d in sources)) and (tile % 2 or halo % 2 or h % 2 or w % 2):
        raise ValueError(f"half-resolution pieces need an even tile, halo and size, got {tile}, {halo}, {size}")
    outs: list[Tensor] = []
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            cy, cx = max(0, y0 - halo), max(0, x0 - halo)
            cy1, cx1 = min(h, y1 + halo), min(w, x1 + halo)
            crops = [t[:, :, cy // d: cy1 // d, cx // d: cx1 // d].contiguous(memory_format=torch.channels_last)
                     for t, d in sources]
            parts = fn(*crops)
            if not outs:
                outs = [_empty(p, (p.shape[0], p.shape[1], h // d, w // d), torch.channels_last)
                        for p, d in zip(parts, out_scales, strict=True)]
            for out, part, d in zip(outs, parts, out_scales, strict=True):
                out[:, :, y0 // d: y1 // d, x0 // d: x1 // d] = \
                    part[:, :, (y0 - cy) // d: (y1 - cy) // d, (x0 - cx) // d: (x1 - cx) // d]
    return outs
