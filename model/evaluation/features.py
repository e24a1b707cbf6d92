"""Feature extractors and the distances over their features: FID and KID.

FID/KID values mean something only together with the extractor that made the features, so
every extractor has a ``name`` that reports carry. :class:`InceptionExtractor` loads NVIDIA's
TorchScript Inception-v3 (``inception-2015-12-05.pt``, the stylegan2-ada convention) from a
local file; nothing is ever downloaded. Without one, :class:`RandomConvExtractor` gives
honest random-conv features (a fixed seeded network): comparable between runs of this project,
not with published FIDs. Re-exported by model.evaluation.metrics.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

INPUT_SIDE = 299  # Inception-v3's input; the random extractor uses it too


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps uint8 (H, W, 3) images to one feature row each."""

    name: str

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:  # (N, D)
        ...


def _batches(images: Sequence[np.ndarray], batch_size: int):
    """Yield uint8 (B, 3, 299, 299) tensors, each image resized (bilinear, antialiased)."""
    for start in range(0, len(images), batch_size):
        chunk = []
        for im in images[start : start + batch_size]:
            im = np.asarray(im)
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"feature extractors take uint8 (H, W, 3) images, got {im.dtype} {im.shape}")
            x = torch.from_numpy(im.transpose(2, 0, 1).copy()).float()[None]  # (1, 3, H, W)
            x = F.interpolate(x, size=(INPUT_SIDE, INPUT_SIDE), mode="bilinear",
                              align_corners=False, antialias=True)
            chunk.append(x.round().clamp(0, 255).to(torch.uint8))
        yield torch.cat(chunk)


class InceptionExtractor:
    """Inception-v3 pool features (N, 2048) from a local TorchScript file.

    Args:
        path: the TorchScript file, e.g. NVIDIA's ``inception-2015-12-05.pt``; it is called as
            ``net(x_uint8_NCHW_299, return_features=True)``.
        batch_size: images per forward pass.
    """

    def __init__(self, path: str | Path, batch_size: int = 16) -> None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Inception model file not found: {path}")
        try:
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, OSError, ValueError) as exc:
            raise ValueError(f"cannot load the TorchScript Inception model {path}: {exc}") from None
        self.path, self.batch_size = path, batch_size
        self.name = f"inception-v3:{path.name}"

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = [self.net(x, return_features=True) for x in _batches(images, self.batch_size)]
        if not out:
            return np.zeros((0, 0))
        feats = torch.cat(out).double().numpy()
        if feats.ndim != 2:
            raise ValueError(f"{self.path} returned features of shape {feats.shape}, expected (N, D)")
        return feats


class RandomConvExtractor:
    """Random-conv features: four seeded He-initialised 3x3 stride-2 convs (3-32-64-128-256)
    with ReLU on a 299x299 resize; the global average of every layer, concatenated (N, 480).

    These are random features: they register colour and texture statistics but are no
    substitute for a trained network. Results carry the name ``randconv-v1``.

    Args:
        seed: seeds the weights (fixed for a seed).
        batch_size: images per forward pass.
    """

    WIDTHS = (3, 32, 64, 128, 256)

    def __init__(self, seed: int = 0, batch_size: int = 16) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.weights = [
            torch.randn(cout, cin, 3, 3, generator=gen) * (2.0 / (cin * 9)) ** 0.5
            for cin, cout in zip(self.WIDTHS[:-1], self.WIDTHS[1:], strict=True)
        ]
        self.batch_size = batch_size
        self.name = "randconv-v1" if seed == 0 else f"randconv-v1-seed{seed}"

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for x in _batches(images, self.batch_size):
            h = x.float() / 127.5 - 1.0  # (B, 3, 299, 299)
            pooled = []
            for w in self.weights:
                h = F.relu(F.conv2d(h, w, stride=2, padding=1))
                pooled.append(h.mean(dim=(2, 3)))  # (B, C)
            rows.append(torch.cat(pooled, dim=1))
        total = sum(self.WIDTHS[1:])
        return torch.cat(rows).double().numpy() if rows else np.zeros((0, total))


def make_extractor(inception_path: str | Path | None) -> FeatureExtractor:
    """Inception when a weights file is configured, else the random-conv extractor.

    Args:
        inception_path: local TorchScript Inception-v3 file, or None.
    """
    return InceptionExtractor(inception_path) if inception_path else RandomConvExtractor()


def _check_features(a: np.ndarray, b: np.ndarray, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with one D, got {a.shape} and {b.shape}")
    if len(a) < min_rows or len(b) < min_rows:
        raise ValueError(f"need at least {min_rows} feature rows per set, got {len(a)} and {len(b)}")
    return a, b


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between gaussians fitted to two feature sets (FID, Heusel et al.):
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    Args:
        feats_a: (N, D) features, N >= 2.
        feats_b: (M, D) features, M >= 2.

    With fewer samples than dimensions the covariances are singular and the value is biased
    upwards; compare FIDs only at equal sample counts and under one extractor.
    """
    a, b = _check_features(feats_a, feats_b, 2)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # N <= D makes the product singular; the eps retry copes
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # singular product: regularise as pytorch-fid does
        eps = np.eye(len(cov_a)) * 1e-6
        covmean = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    diff = mu_a - mu_b
    fid = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(np.real(covmean))
    return float(max(fid, 0.0))


def kernel_inception_distance(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """Kernel distance (KID, Binkowski et al. 2018): unbiased MMD^2 with the polynomial kernel
    k(x, y) = (x.y / D + 1)^3, averaged over random subsets (stylegan2-ada's estimator).

    Args:
        feats_a: (N, D) features.
        feats_b: (M, D) features.
        subsets: number of random subsets.
        subset_size: rows per subset, capped at min(N, M) (needs >= 2).
        seed: seeds the subset draws.
    """
    a, b = _check_features(feats_a, feats_b, 2)
    d, m = a.shape[1], min(len(a), len(b), subset_size)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m - 1)
        total += within - 2.0 * kxy.sum() / m
    return float(total / subsets / m)
