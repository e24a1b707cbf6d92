"""The colour axes of real fine detail (``GeneratorConfig.detail_rank``).

H&E colour comes from two stains, so the detail that a finer scale adds to a coarser image
of real tissue varies along few colour directions: on the Gleason training tiles 99 % of the
2 px detail's variance lies along one axis, close to grey (in [-1, 1] RGB; 95 % in the
generator's atanh space, away from white), where the shipped models' detail spreads 10-14 %
across the others (colour speckle, green fringes at gland borders). The axes are the eigenvectors of
the detail's 3x3 colour covariance, measured once on the training images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from model.config import Output
from model.nets.generator import EPS


def detail(image: np.ndarray, output: Output = "tanh", pool: int = 2, limit: float = 1.0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fine detail of a uint8 (H, W, 3) image: its value minus the bilinear upsampling of its
    ``pool``-times average-pooled copy, in the space the generator adds Phi in (atanh of
    [-1, 1] for ``tanh``, [-1, 1] itself for ``residual``).

    Returns:
        the detail (3, H', W') (H' = H cut to a multiple of ``pool``) and a (H', W') bool map
        of the pixels whose value and upsampled value stay within ``limit`` in every channel.
    """
    h, w = (image.shape[0] // pool) * pool, (image.shape[1] // pool) * pool
    x = torch.from_numpy(np.array(image[:h, :w])).permute(2, 0, 1)[None].float() / 127.5 - 1
    up = F.interpolate(F.avg_pool2d(x, pool), size=(h, w), mode="bilinear", align_corners=False)
    inside = ((x.abs() <= limit) & (up.abs() <= limit)).all(dim=1)[0]
    if output == "tanh":
        x, up = (torch.atanh(t.clamp(-1 + EPS, 1 - EPS)) for t in (x, up))
    return (x - up)[0], inside


def detail_covariance(images: Sequence[np.ndarray], output: Output = "tanh", pool: int = 2,
                      limit: float = 1.0) -> torch.Tensor:
    """The 3x3 colour covariance (float64) of the images' fine detail (:func:`detail`), each
    image's detail centred on its own mean, pooled over the pixels within ``limit``."""
    if not images:
        raise ValueError("fine detail needs at least one image")
    cov = torch.zeros(3, 3, dtype=torch.float64)
    count = 0
    for image in images:
        values, inside = detail(image, output, pool, limit)
        d = values[:, inside].double()  # (3, N)
        d = d - d.mean(dim=1, keepdim=True)
        cov += d @ d.T
        count += d.shape[1]
    return cov / max(count - 1, 1)


def principal_axes(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-axes of a 3x3 covariance: ``axes`` (3, 3) float32, one unit axis per column, most
    varied first, each signed so that its largest component is positive, and the variance
    along each (3,), in the same order."""
    values, vectors = torch.linalg.eigh(cov)  # ascending
    values, vectors = values.flip(0), vectors.flip(1)
    signs = torch.sign(vectors.gather(0, vectors.abs().argmax(dim=0, keepdim=True)))
    return (vectors * signs).float(), values


def detail_axes(images: Sequence[np.ndarray], output: Output = "tanh", pool: int = 2,
                limit: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """The principal colour axes of the images' fine detail (:func:`detail_covariance`).

    Args:
        images: real uint8 (H, W, 3) images (the training tiles).
        output: the generator's output (``GeneratorConfig.output``).
        pool: the detail's scale: what a 2x coarser image misses.
        limit: only pixels whose value and upsampled value stay within +-limit in every
            channel count. atanh stretches the detail next to white lumina without bound, so
            over all pixels those few (and the red-blue contrast of their rims) would set the
            axes; at 0.9 the first axis holds 95 % of the Gleason tiles' detail.

    Returns:
        ``axes`` (3, 3) float32 as in :func:`principal_axes`; ``shares`` (3,): each axis's
        share of the variance.
    """
    axes, variances = principal_axes(detail_covariance(images, output, pool, limit))
    return axes, (variances / variances.sum()).float()
