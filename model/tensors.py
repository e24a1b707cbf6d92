"""Images and masks as tensors: conversion, pyramids, padding of arrays, noise maps.

Images are uint8 (H, W, 3) arrays on disk and float (B, 3, H, W) tensors in [-1, 1] in the
networks; masks are int64 (H, W) class indices. Used by inference and training alike; the
tensor resampling helpers (upsample, crop, pad_to_multiple) live in :mod:`model.nets.blocks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

ArrayPad = Literal["reflect", "symmetric", "edge"]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) to float (3, H, W) in [-1, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # (3, H, W)
    return x.float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float (3, H, W) or (B, 3, H, W) in [-1, 1] to uint8 (H, W, 3) or (B, H, W, 3)."""
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    u = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return u.movedim(-3, -1).cpu().numpy()


# ---- pyramids ---------------------------------------------------------------------------
def image_pyramid(x: torch.Tensor, num_scales: int) -> list[torch.Tensor]:
    """Entry n is ``x`` average-pooled n times (n = 0 is ``x`` itself; odd sides round down)."""
    _check_scales(x.shape[-2:], num_scales)
    out = [x]  # (B, 3, H, W)
    for _ in range(num_scales - 1):
        out.append(F.avg_pool2d(out[-1], 2))  # (B, 3, H / 2**n, W / 2**n)
    return out


def mask_pyramid(
    labels: torch.Tensor, num_classes: int, num_scales: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Soft one-hot masks (B, K, h, w) and their argmax labels (B, h, w), indexed by n."""
    _check_scales(labels.shape[-2:], num_scales)
    _check_labels(labels, num_classes)
    onehot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()  # (B, K, H, W)
    onehots = image_pyramid(onehot, num_scales)
    return onehots, [labels.long()] + [o.argmax(dim=1) for o in onehots[1:]]


def mask_pyramid_from(
    labels: torch.Tensor, num_classes: int, num_scales: int, start: int
) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
    """The entries ``start`` and coarser of :func:`mask_pyramid` (None below ``start``), equal
    to them: entry ``start`` counts each class per ``2**start``-pixel block (one byte per pixel
    and class) instead of pooling a full-resolution float one-hot map."""
    if start == 0:
        onehots, labs = mask_pyramid(labels, num_classes, num_scales)
        return list(onehots), list(labs)
    _check_scales(labels.shape[-2:], num_scales)
    _check_labels(labels, num_classes)
    f = 2**start
    b, h, w = labels.shape[0], labels.shape[-2] // f, labels.shape[-1] // f
    blocks = labels[:, : h * f, : w * f]
    counts = [(blocks == k).view(torch.uint8).reshape(b, h, f, w, f).sum((2, 4), dtype=torch.int32)
              for k in range(num_classes)]
    first = torch.stack(counts, 1).float() / (f * f)  # (B, K, h, w): exact fractions
    onehots = image_pyramid(first, num_scales - start)
    return [None] * start + list(onehots), [None] * start + [o.argmax(dim=1) for o in onehots]


def _check_labels(labels: torch.Tensor, num_classes: int) -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be class indices in 0..{num_classes - 1}")


def _check_scales(size: Sequence[int], num_scales: int) -> None:
    if num_scales < 1 or min(size) < 2 ** (num_scales - 1):
        raise ValueError(f"a {tuple(size)} input is too small for {num_scales} scales")


# ---- padding arrays -----------------------------------------------------------------------
def pad_array(a: np.ndarray, size: tuple[int, int], mode: ArrayPad = "reflect",
              centred: bool = False) -> np.ndarray:
    """Pad an (H, W[, C]) array to at least ``size`` (bottom/right, or both sides if centred)."""
    h, w = a.shape[:2]
    ph, pw = max(0, size[0] - h), max(0, size[1] - w)
    if not ph and not pw:
        return a
    rows, cols = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)) if centred else ((0, ph), (0, pw))
    return np.pad(a, [rows, cols] + [(0, 0)] * (a.ndim - 2), mode=mode)


def pad_array_to_multiple(a: np.ndarray, factor: int) -> np.ndarray:
    """Reflect-pad the bottom/right so both sides are multiples of ``factor``.

    Sides too short to reflect (pad >= side) are mirrored with their edge row repeated.
    """
    h, w = a.shape[:2]
    ph, pw = (-h) % factor, (-w) % factor
    mode: ArrayPad = "reflect" if h > ph and w > pw else "symmetric"
    return pad_array(a, (h + ph, w + pw), mode)


# ---- noise ----------------------------------------------------------------------------------
def noise_maps(generator: torch.Generator, batch: int, channels: Sequence[int],
               sizes: Sequence[tuple[int, int]], stop_at: int = 0,
               coarse_first: bool = False) -> list[torch.Tensor | None]:
    """Unit normal maps (batch, channels[m], h_m, w_m) for scales m >= ``stop_at``, None below.

    Drawn on the CPU from ``generator``, so the numbers do not depend on the device;
    ``coarse_first`` draws the coarsest scale first (a variant's coarse noise then does not
    depend on how many finer scales there are).
    """
    order = reversed(range(len(sizes))) if coarse_first else range(len(sizes))
    maps = {m: torch.randn(batch, channels[m], *sizes[m], generator=generator) for m in order if m >= stop_at}
    return [maps.get(m) for m in range(len(sizes))]
