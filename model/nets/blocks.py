"""Shared building blocks: normalisation, conv blocks, one-hot masks, resampling, padding."""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import Norm

PadMode = Literal["reflect", "replicate", "constant"]


def make_norm(norm: Norm, ch: int) -> nn.Module:
    """A normalisation layer by name.

    Args:
        norm: ``batch``, ``instance`` (no affine parameters, as in pix2pixHD) or ``none``.
        ch: channels to normalise.
    """
    if norm == "batch":
        return nn.BatchNorm2d(ch)
    if norm == "instance":
        return nn.InstanceNorm2d(ch, affine=False)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose batch, instance or none")


class ConvBlock(nn.Sequential):
    """Conv3x3 (reflect padding) - Norm - LeakyReLU(0.2); keeps the spatial size.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        norm: normalisation after the conv.
        dilation: the conv's dilation; above 1 it zero-pads (any input side works).
    """

    def __init__(self, in_ch: int, out_ch: int, norm: Norm, dilation: int = 1) -> None:
        pad_mode = "reflect" if dilation == 1 else "zeros"
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, padding_mode=pad_mode,
                      bias=norm == "none"),
            make_norm(norm, out_ch),
            nn.LeakyReLU(0.2, inplace=True),  # neither the norm's nor the conv's backward reads its output
        )


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Class indices to a float one-hot map.

    Args:
        labels: (B, H, W) long class indices in 0..num_classes-1.
        num_classes: K.

    Returns:
        (B, K, H, W) float.
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be (B, H, W), got shape {tuple(labels.shape)}")
    return F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()  # (B, K, H, W)


def downsample(x: Tensor) -> Tensor:
    """Halve H and W by 2x2 averaging (the pyramid's factor between scales)."""
    return F.avg_pool2d(x, 2)


def upsample(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize to ``size`` (H, W); a no-op when the size already matches."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def gaussian_taps(sigma: float) -> list[float]:
    """1-D Gaussian weights of radius ceil(3 sigma), scaled so that their squares sum to 1:
    a separable blur with them keeps unit-variance white noise at unit variance."""
    radius = max(1, math.ceil(3 * sigma))
    taps = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-radius, radius + 1)]
    norm = math.sqrt(sum(t * t for t in taps))
    return [t / norm for t in taps]


def smooth_noise(z: Tensor, sigma: float) -> Tensor:
    """Noise z (B, C, H, W) blurred by a Gaussian of ``sigma`` pixels, at its own variance.

    A separable sum of shifted slices (no conv kernel), so each sample's result does not
    depend on the batch it is in; borders are reflected (replicated on sides too short to
    reflect). ``sigma`` 0 returns z itself.
    """
    if sigma <= 0:
        return z
    taps = gaussian_taps(sigma)
    r = len(taps) // 2
    h, w = z.shape[-2:]
    mode = "reflect" if min(h, w) > r else "replicate"
    padded = F.pad(z, (r, r, r, r), mode=mode)
    rows = sum(t * padded[..., :, i:i + w] for i, t in enumerate(taps))  # (B, C, H + 2r, W)
    return sum(t * rows[..., i:i + h, :] for i, t in enumerate(taps))  # type: ignore[return-value]


def _max_second_moment(m: int) -> float:
    """E[M^2] for M the largest of m standard normals (numerical integration)."""
    step, total = 1e-3, 0.0
    for i in range(-8000, 8000):
        x = i * step
        cdf = 0.5 * (1 + math.erf(x / math.sqrt(2)))
        total += x * x * m * math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) * cdf ** (m - 1) * step
    return total


@functools.lru_cache(maxsize=32)
def seed_scale(window: int) -> float:
    """The factor that gives :func:`seed_points` of unit normal noise unit second moment
    (each pixel is its window's maximum with probability 1 / window^2)."""
    m = window * window
    return math.sqrt(m / _max_second_moment(m))


def seed_points(z: Tensor, window: int) -> Tensor:
    """z (B, C, H, W) kept only where it is the maximum of its ``window`` x ``window``
    neighbourhood (per channel), zero elsewhere, times :func:`seed_scale`: about one point
    per window^2 pixels, none closer than window / 2 to a larger one. Max comparisons only,
    so it commutes with a positive scale of z, keeps zeros zero and does not depend on the
    batch. ``window`` <= 1 returns z itself."""
    if window <= 1:
        return z
    peak = _window_max(_window_max(z, window, -1), window, -2)
    return torch.where((z == peak) & (z > 0), z, torch.zeros_like(z)) * seed_scale(window)


def _window_max(x: Tensor, window: int, dim: int) -> Tensor:
    """Max over ``window`` neighbours along ``dim`` (from i - window // 2), as a stride-1 max
    pool padded with -inf, by doubling: log2(window) elementwise maxima instead of window."""
    lo = window // 2
    pad = [0, 0] * (x.ndim - 1 - dim % x.ndim) + [lo, window - 1 - lo]
    m = F.pad(x, pad, value=float("-inf"))
    width = 1
    while 2 * width <= window:
        n = m.shape[dim] - width
        m = torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, width, n))
        width *= 2
    if width < window:
        n = m.shape[dim] - (window - width)
        m = torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, window - width, n))
    return m


def pad_to_multiple(x: Tensor, m: int, mode: PadMode = "reflect") -> tuple[Tensor, tuple[int, int]]:
    """Pad bottom and right so that H and W are multiples of ``m``.

    Reflection needs a pad smaller than the side; for sides too small for it (tiny
    coarse scales) ``reflect`` pads by replication instead.

    Args:
        x: (B, C, H, W).
        m: the multiple.
        mode: padding mode of ``F.pad``.

    Returns:
        The padded (B, C, H', W') tensor and the original (H, W) for :func:`crop`.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def crop(x: Tensor, size: tuple[int, int], at: tuple[int, int] = (0, 0)) -> Tensor:
    """The (H, W) window whose top-left corner is ``at``; by default undoes :func:`pad_to_multiple`."""
    top, left = at
    return x[..., top : top + size[0], left : left + size[1]]


# ---- boxes: the part of an output that is needed, traced back through a network --------

#: (top, left, height, width) of a rectangle of pixels.
Box = tuple[int, int, int, int]


def cut_box(x: Tensor, box: Box, origin: tuple[int, int] = (0, 0)) -> Tensor:
    """The pixels of ``box`` from ``x`` (B, C, H, W), whose pixel (0, 0) is at ``origin``."""
    return crop(x, (box[2], box[3]), at=(box[0] - origin[0], box[1] - origin[1]))


def grow_box(box: Box, r: int, size: tuple[int, int]) -> Box:
    """``box`` widened by ``r`` pixels on every side, clipped to an image of ``size`` (H, W)."""
    top, left = max(0, box[0] - r), max(0, box[1] - r)
    bottom, right = min(size[0], box[0] + box[2] + r), min(size[1], box[1] + box[3] + r)
    return top, left, bottom - top, right - left


def half_box(box: Box, size: tuple[int, int]) -> Box:
    """The box of a half-resolution image of ``size`` (H, W) that a 2x upsampling of it needs
    for every pixel of ``box``: bilinear (``align_corners=False``) and the transposed 3x3
    stride-2 conv alike, when run on the half box alone, give the same values inside ``box``
    as on the whole image."""
    def axis(start: int, length: int, n: int) -> tuple[int, int]:
        lo, hi = max(0, start // 2 - 1), min(n, (start + length - 1) // 2 + 2)
        return lo, hi - lo
    (top, h), (left, w) = axis(box[0], box[2], size[0]), axis(box[1], box[3], size[1])
    return top, left, h, w
