"""Image-set similarity: sliced Wasserstein distance on Laplacian-pyramid patches
(Karras et al. 2018) and multi-scale SSIM (Wang et al. 2003). Re-exported by model.evaluation.metrics.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# ---- sliced Wasserstein distance on Laplacian-pyramid patches ------------------------------

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _separable(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Depthwise separable filter, valid region only.  # (B, C, H, W) -> (B, C, H-k+1, W-k+1)"""
    c, k = x.shape[1], len(taps)
    x = F.conv2d(x, taps.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, taps.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """5x5 binomial filter (cv2.pyrDown's), mirror padding.  # (C, H, W) -> (C, H, W)"""
    xp = F.pad(x[None], (2, 2, 2, 2), mode="reflect")
    return _separable(xp, _BINOMIAL * gain**0.5)[0]


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Laplacian pyramid of a uint8 (H, W, 3) image, finest first; the last level is the
    low-pass residual. Entries are float (3, h, w) in pixel units.

    Args:
        image: (H, W, 3) uint8.
        levels: number of levels (>= 1).
    """
    gauss = [torch.from_numpy(np.asarray(image, np.float32).transpose(2, 0, 1).copy())]
    for _ in range(levels - 1):
        gauss.append(_blur(gauss[-1])[:, ::2, ::2])
    out = []
    for fine, coarse in itertools.pairwise(gauss):
        up = torch.zeros((3, coarse.shape[1] * 2, coarse.shape[2] * 2), dtype=coarse.dtype)
        up[:, ::2, ::2] = coarse
        up = _blur(up, gain=4.0)[:, : fine.shape[1], : fine.shape[2]]
        out.append((fine - up).numpy())
    out.append(gauss[-1].numpy())
    return out


def swd_levels(min_side: int, patch_size: int = 7) -> int:
    """Default SWD pyramid depth: one level per resolution >= 16, as the reference (at least
    one; the patches must fit).

    Args:
        min_side: smallest image side of both sets.
        patch_size: patch side.
    """
    if min_side < patch_size:
        raise ValueError(f"images of side {min_side} are smaller than the {patch_size}px patches")
    levels, side = 1, min_side // 2
    while side >= max(16, patch_size):
        levels, side = levels + 1, side // 2
    return levels


def _descriptors(images: Sequence[np.ndarray], levels: int, patch: int, per_image: int,
                 seed: int) -> list[np.ndarray]:
    """Random patches per level (n, 3 * patch**2), normalised per channel over the set."""
    rng = np.random.default_rng(seed)
    per_level: list[list[np.ndarray]] = [[] for _ in range(levels)]
    for image in images:
        if np.ndim(image) != 3 or np.shape(image)[2] != 3:
            raise ValueError(f"SWD takes RGB (H, W, 3) images, got shape {np.shape(image)}")
        for lvl, band in enumerate(laplacian_pyramid(image, levels)):
            _, h, w = band.shape
            if min(h, w) < patch:
                raise ValueError(f"level {lvl} of a {image.shape[:2]} image is under {patch}px")
            windows = np.lib.stride_tricks.sliding_window_view(band, (patch, patch), axis=(1, 2))
            ys = rng.integers(0, h - patch + 1, per_image)
            xs = rng.integers(0, w - patch + 1, per_image)
            per_level[lvl].append(windows[:, ys, xs].transpose(1, 0, 2, 3))  # (n, 3, p, p)
    out = []
    for chunks in per_level:
        desc = np.concatenate(chunks).astype(np.float64)
        desc = desc - desc.mean(axis=(0, 2, 3), keepdims=True)
        std = desc.std(axis=(0, 2, 3), keepdims=True)
        out.append((desc / np.where(std > 0, std, 1.0)).reshape(len(desc), -1))
    return out


def _wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact W1 between the empirical distributions in each row.  # (P, n), (P, m) -> (P,)

    Integrates |F_a - F_b| over the merged support (what scipy.stats.wasserstein_distance does,
    batched); equals mean |sort(a) - sort(b)| (the reference) when n == m.
    """
    a, b = a.sort(dim=1).values.contiguous(), b.sort(dim=1).values.contiguous()
    allv = torch.cat([a, b], dim=1).sort(dim=1).values
    deltas = allv.diff(dim=1)
    cdf_a = torch.searchsorted(a, allv[:, :-1].contiguous(), right=True) / a.shape[1]
    cdf_b = torch.searchsorted(b, allv[:, :-1].contiguous(), right=True) / b.shape[1]
    return ((cdf_a - cdf_b).abs() * deltas).sum(dim=1)


def sliced_wasserstein(
    images_a: Sequence[np.ndarray],
    images_b: Sequence[np.ndarray],
    patch_size: int = 7,
    patches_per_image: int = 128,
    levels: int | None = None,
    projections: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Sliced Wasserstein distance between two image sets (Karras et al. 2018), times 1e3.

    Each set's Laplacian-pyramid patches are normalised per channel and level over that set
    (so a global colour shift of a whole set is not penalised, as in the reference), projected
    on random unit directions, and compared with the 1-D Wasserstein distance. Patch positions
    depend only on the seed and image sizes, so identical sets give exactly 0.

    Args:
        images_a: uint8 (H, W, 3) images; sizes may differ.
        images_b: the other set (its size may differ from ``images_a``'s).
        patch_size: side of the patches.
        patches_per_image: patches drawn per image and level.
        levels: pyramid levels; default one per resolution >= 16 of the smallest image.
        projections: random directions per level.
        seed: seeds patch positions and directions.

    Returns:
        ``{"levels": [SWD per level, finest first], "mean": mean over levels}``, times 1e3
        (the reference's SWDx1e3).
    """
    if not images_a or not images_b:
        raise ValueError("sliced_wasserstein needs at least one image in each set")
    min_side = min(min(np.shape(i)[:2]) for i in [*images_a, *images_b])
    levels = levels or swd_levels(min_side, patch_size)
    desc_a = _descriptors(images_a, levels, patch_size, patches_per_image, seed)
    desc_b = _descriptors(images_b, levels, patch_size, patches_per_image, seed)
    gen = torch.Generator().manual_seed(seed)
    per_level = []
    for da, db in zip(desc_a, desc_b, strict=True):
        dirs = torch.randn(da.shape[1], projections, generator=gen, dtype=torch.float64)
        dirs /= dirs.norm(dim=0, keepdim=True)  # (D, P) unit directions
        pa, pb = torch.from_numpy(da) @ dirs, torch.from_numpy(db) @ dirs  # (n, P), (m, P)
        per_level.append(float(_wasserstein_1d(pa.T, pb.T).mean()) * 1e3)
    return {"levels": per_level, "mean": float(np.mean(per_level))}


# ---- MS-SSIM -------------------------------------------------------------------------------

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN, _SIGMA = 11, 1.5


def _gauss_1d() -> torch.Tensor:
    x = torch.arange(_WIN, dtype=torch.float32) - _WIN // 2
    g = torch.exp(-(x**2) / (2 * _SIGMA**2))
    return g / g.sum()


def _scale_terms(xs: list[torch.Tensor], pairs: Sequence[tuple[int, int]], g: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and contrast-structure term per pair and channel (P, C), data range 255.

    xs: (1, C, H, W) images of one scale. Each image's local mean and second moment are
    filtered once; each pair adds only its cross moment.
    """
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    stats = [_separable(torch.cat([x, x * x], dim=1), g)[0].chunk(2) for x in xs]  # (C, h, w) x2
    ssims, css = [], []
    for i, j in pairs:
        (mx, xx), (my, yy) = stats[i], stats[j]
        xy = _separable(xs[i] * xs[j], g)[0]
        sxx, syy, sxy = xx - mx * mx, yy - my * my, xy - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        ssim = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
        ssims.append(ssim.mean(dim=(1, 2)))
        css.append(cs.mean(dim=(1, 2)))
    return torch.stack(ssims).double(), torch.stack(css).double()


def ms_scales(min_side: int) -> int:
    """Scales MS-SSIM uses for images of this side: up to 5, while the coarsest scale still
    holds an 11x11 window."""
    if min_side < _WIN:
        raise ValueError(f"MS-SSIM needs images of at least {_WIN}x{_WIN} pixels, got side {min_side}")
    scales = 1
    while scales < 5 and min_side // 2**scales >= _WIN:
        scales += 1
    return scales


def ms_ssim_pairs(images: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]]) -> list[float]:
    """Multi-scale SSIM (Wang et al. 2003) of pairs of uint8 (H, W, 3) images of one shape.

    Gaussian window 11 / sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, 2x average-pool
    between scales, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); fewer scales (weights
    renormalised) for images under 176 px. Negative terms are clipped to 0 before the powers;
    per-channel values are averaged. Shared work is done once per image.

    Args:
        images: uint8 (H, W, 3) images, all of one shape.
        pairs: index pairs into ``images``.
    """
    shapes = {np.shape(im) for im in images}
    if len(shapes) > 1:
        raise ValueError(f"MS-SSIM needs images of one shape, got {sorted(shapes)}")
    if not pairs:
        return []
    scales = ms_scales(min(np.shape(images[0])[:2]))
    w = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    w = w / w.sum()
    g = _gauss_1d()
    xs = [torch.from_numpy(np.asarray(im, np.float32).transpose(2, 0, 1).copy())[None]
          for im in images]  # (1, 3, H, W) each
    value = torch.ones(len(pairs), xs[0].shape[1], dtype=torch.float64)
    for i in range(scales):
        ssim, cs = _scale_terms(xs, pairs, g)
        value = value * (ssim if i == scales - 1 else cs).clamp(min=0) ** w[i]
        xs = [F.avg_pool2d(x, 2) for x in xs]
    return value.mean(dim=1).tolist()


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM of two uint8 (H, W, 3) images (see :func:`ms_ssim_pairs`).

    Args:
        a: uint8 (H, W, 3) image.
        b: uint8 image of the same shape.
    """
    return ms_ssim_pairs([a, b], [(0, 1)])[0]


def mean_pairwise_ms_ssim(images: Sequence[np.ndarray]) -> float:
    """Mean MS-SSIM over all unordered pairs of images (diversity: lower is more diverse).

    Args:
        images: at least two uint8 (H, W, 3) images of one shape.
    """
    if len(images) < 2:
        raise ValueError("mean_pairwise_ms_ssim needs at least two images")
    return float(np.mean(ms_ssim_pairs(images, list(itertools.combinations(range(len(images)), 2)))))
