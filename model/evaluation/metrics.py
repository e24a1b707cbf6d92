"""Segmentation and generation metrics.

Segmentation (paper section 4.3.1): confusion matrix, per-class Jaccard, mIoU, OPA, SMA, and
the GlaS challenge object metrics (object F1, object Dice, object Hausdorff; Sirinukunwattana
et al. 2017). Generation (section 4.2.2): sliced Wasserstein distance on Laplacian-pyramid
patches (Karras et al. 2018), MS-SSIM (Wang et al. 2003) (both in model/similarity.py), mask
consistency, and FID/KID over a pluggable feature extractor (model/features.py). Everything is
importable from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from skimage.measure import label as connected_components
from skimage.metrics import hausdorff_distance

from model.evaluation.features import (  # re-exported
    FeatureExtractor,
    InceptionExtractor,
    RandomConvExtractor,
    frechet_distance,
    kernel_inception_distance,
    make_extractor,
)
from model.evaluation.similarity import (  # re-exported
    laplacian_pyramid,
    mean_pairwise_ms_ssim,
    ms_scales,
    ms_ssim,
    ms_ssim_pairs,
    sliced_wasserstein,
    swd_levels,
)

__all__ = [
    "object_scores",
    "FeatureExtractor", "InceptionExtractor", "RandomConvExtractor", "confusion_matrix",
    "frechet_distance", "kernel_inception_distance", "laplacian_pyramid", "make_extractor",
    "mask_consistency", "mean_pairwise_ms_ssim", "ms_scales", "ms_ssim", "ms_ssim_pairs",
    "object_dice", "object_f1", "object_hausdorff", "scores_from_confusion",
    "segmentation_scores", "sliced_wasserstein", "swd_levels",
]

ArrayOrList = np.ndarray | Sequence[np.ndarray]

# ---- segmentation: confusion matrix and pixel scores ---------------------------------------


def _as_list(x: ArrayOrList) -> list[np.ndarray]:
    return [np.asarray(x)] if isinstance(x, np.ndarray) else [np.asarray(a) for a in x]


def confusion_matrix(pred: ArrayOrList, target: ArrayOrList, num_classes: int) -> np.ndarray:
    """Pixel confusion matrix C (K, K) int64, ``C[i, j]`` = pixels of target i predicted j.

    Args:
        pred: predicted class map(s) (H, W), or a list of them (one matrix is accumulated).
        target: ground-truth class map(s), same shapes as ``pred``.
        num_classes: K; values outside 0..K-1 are a ValueError.
    """
    preds, targets = _as_list(pred), _as_list(target)
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
    cm = np.zeros((num_classes, num_classes), np.int64)
    for p, t in zip(preds, targets, strict=True):
        if p.shape != t.shape:
            raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
        for name, a in (("prediction", p), ("target", t)):
            if a.size and (a.min() < 0 or a.max() >= num_classes):
                raise ValueError(f"{name} has class indices outside 0..{num_classes - 1}")
        flat = t.astype(np.int64).ravel() * num_classes + p.astype(np.int64).ravel()
        cm += np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)
    return cm


def scores_from_confusion(cm: np.ndarray, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Jaccard per class, mIoU, OPA and SMA of a confusion matrix (paper section 4.3.1).

    A class absent from both prediction and target has Jaccard None and is left out of mIoU;
    a class absent from the target has recall None and is left out of SMA.

    Args:
        cm: (K, K) confusion matrix, rows = target, columns = prediction.
        names: class names for the per-class dicts (default ``"0"``, ``"1"``, ...).
    """
    k = cm.shape[0]
    names = list(names) if names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"got {len(names)} class names for {k} classes")
    tp = np.diag(cm).astype(np.float64)
    rows, cols = cm.sum(1).astype(np.float64), cm.sum(0).astype(np.float64)
    union = rows + cols - tp
    iou = [float(tp[i] / union[i]) if union[i] > 0 else None for i in range(k)]
    recall = [float(tp[i] / rows[i]) if rows[i] > 0 else None for i in range(k)]
    total = float(cm.sum())
    return {
        "jaccard": dict(zip(names, iou, strict=True)),
        "miou": _mean_defined(iou),
        "opa": float(tp.sum() / total) if total > 0 else None,
        "sma": _mean_defined(recall),
        "recall": dict(zip(names, recall, strict=True)),
        "pixels": int(total),
        "confusion": cm.tolist(),
    }


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def segmentation_scores(
    pred: ArrayOrList, target: ArrayOrList, num_classes: int, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Per-class Jaccard, mIoU, OPA and SMA over one or many class maps.

    Args:
        pred: predicted class map(s) (H, W) int.
        target: ground-truth class map(s).
        num_classes: K.
        names: class names (see :func:`scores_from_confusion`).
    """
    return scores_from_confusion(confusion_matrix(pred, target, num_classes), names)


# ---- GlaS object metrics -------------------------------------------------------------------


def _instances(mask: np.ndarray) -> np.ndarray:
    """Binary masks get connected components (8-connectivity, as MATLAB's bwlabel); arrays
    with values above 1 are taken as instance labels (0 = background)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"object metrics need a 2-D mask, got shape {mask.shape}")
    if mask.dtype == bool or mask.max(initial=0) <= 1:
        return connected_components(mask > 0, connectivity=2).astype(np.int64)
    return mask.astype(np.int64)


def _object_ids(inst: np.ndarray) -> list[int]:
    return [int(i) for i in np.unique(inst) if i != 0]


def _most_overlapping(obj: np.ndarray, other: np.ndarray) -> int:
    """Label of ``other`` that overlaps the boolean ``obj`` most (0 when none)."""
    hits = other[obj]
    hits = hits[hits != 0]
    return int(np.bincount(hits).argmax()) if hits.size else 0


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, g = _instances(pred), _instances(gt)
    if s.shape != g.shape:
        raise ValueError(f"prediction shape {s.shape} differs from ground-truth shape {g.shape}")
    return s, g


def object_f1(pred: np.ndarray, gt: np.ndarray) -> float:
    """GlaS object-level F1.

    A segmented object is a true positive when it covers at least 50% of the area of the
    ground-truth object it overlaps most (each ground-truth object is matched at most once;
    a second match counts as a false positive); other segmented objects are false positives,
    unmatched ground-truth objects false negatives. Both empty: 1.0; one empty: 0.0.

    Args:
        pred: binary mask (objects = connected components) or instance labels (H, W).
        gt: the same for the ground truth.
    """
    s, g = _pair(pred, gt)
    s_ids, g_ids = _object_ids(s), _object_ids(g)
    if not s_ids and not g_ids:
        return 1.0
    if not s_ids or not g_ids:
        return 0.0
    matched: set[int] = set()
    for i in s_ids:
        obj = s == i
        j = _most_overlapping(obj, g)
        if j and j not in matched and np.sum(obj & (g == j)) >= 0.5 * np.sum(g == j):
            matched.add(j)
    tp = len(matched)
    fp, fn = len(s_ids) - tp, len(g_ids) - tp
    return 2.0 * tp / (2.0 * tp + fp + fn)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2.0 * np.sum(a & b) / total) if total else 0.0


def _weighted_side(a: np.ndarray, b: np.ndarray, measure: Callable, nearest: bool) -> float:
    """Sum over objects of ``a`` of area weight times ``measure(object, its match in b)``.

    The match is the most-overlapping object of ``b``; without overlap it is empty (Dice) or,
    when ``nearest``, the object of ``b`` at the smallest Hausdorff distance (GlaS code).
    """
    total_area = float(np.sum(a > 0))
    out = 0.0
    for i in _object_ids(a):
        obj = a == i
        j = _most_overlapping(obj, b)
        if j:
            match = b == j
        elif nearest:
            match = min((b == k for k in _object_ids(b)), key=lambda m: measure(obj, m))
        else:
            match = np.zeros_like(obj)
        out += obj.sum() / total_area * measure(obj, match)
    return out


def object_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """GlaS object-level Dice: half the area-weighted Dice of each segmented object with its
    most-overlapping ground-truth object plus the same from the ground-truth side.
    Both empty: 1.0; one empty: 0.0.

    Args:
        pred: binary mask or instance labels (H, W).
        gt: binary mask or instance labels (H, W).
    """
    s, g = _pair(pred, gt)
    if not _object_ids(s) and not _object_ids(g):
        return 1.0
    if not _object_ids(s) or not _object_ids(g):
        return 0.0
    return 0.5 * (_weighted_side(s, g, _dice, False) + _weighted_side(g, s, _dice, False))


def object_hausdorff(pred: np.ndarray, gt: np.ndarray) -> float:
    """GlaS object-level Hausdorff distance (pixels): half the area-weighted Hausdorff distance
    of each segmented object to its most-overlapping ground-truth object (the nearest one when
    none overlaps) plus the same from the ground-truth side. Distances are between the objects'
    pixel sets. Both empty: 0.0; one empty: ``inf``.

    Args:
        pred: binary mask or instance labels (H, W).
        gt: binary mask or instance labels (H, W).
    """
    s, g = _pair(pred, gt)
    if not _object_ids(s) and not _object_ids(g):
        return 0.0
    if not _object_ids(s) or not _object_ids(g):
        return float("inf")
    return 0.5 * (
        _weighted_side(s, g, hausdorff_distance, True)
        + _weighted_side(g, s, hausdorff_distance, True)
    )


def mask_consistency(
    segment: Callable[[np.ndarray], np.ndarray],
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    num_classes: int,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """How well a segmenter recovers the masks from images: :func:`segmentation_scores` of
    ``segment(image)`` against ``mask``.

    Args:
        segment: image uint8 (H, W, 3) -> class map (H, W).
        images: the images (e.g. generated from ``masks``).
        masks: class-index masks (H, W), one per image.
        num_classes: K.
        names: class names for the report.
    """
    if len(images) != len(masks):
        raise ValueError(f"got {len(images)} images for {len(masks)} masks")
    return segmentation_scores([segment(im) for im in images], list(masks), num_classes, names)


def object_scores(preds: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict[str, Any]:
    """GlaS object F1, Dice and Hausdorff of class 1 per image and their means.

    Hausdorff is averaged over the images where it is finite; ``hausdorff_infinite`` counts
    the others (an empty prediction or mask).
    """
    rows = [
        {"f1": object_f1(p == 1, m == 1), "dice": object_dice(p == 1, m == 1),
         "hausdorff": object_hausdorff(p == 1, m == 1)}
        for p, m in zip(preds, masks, strict=True)
    ]
    finite = [r["hausdorff"] for r in rows if np.isfinite(r["hausdorff"])]
    return {
        "object_f1": float(np.mean([r["f1"] for r in rows])),
        "object_dice": float(np.mean([r["dice"] for r in rows])),
        "object_hausdorff": float(np.mean(finite)) if finite else None,
        "hausdorff_infinite": len(rows) - len(finite),
        "per_image": rows,
    }
