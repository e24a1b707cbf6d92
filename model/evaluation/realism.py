"""Realism measures that need no downloaded weights, each with a real-vs-real floor.

- :func:`two_sample_test`: a small CNN trained from scratch to tell the patches of two image
  sets apart; it trains on the left half of every image and is scored on the right halves
  (patches it never saw). Balanced accuracy 0.5 = indistinguishable, 1.0 = always told apart.
  :func:`real_vs_real` gives the floor on real tiles alone.
- :func:`nuclei_stats` / :func:`compare_nuclei`: nuclei found by colour deconvolution
  (haematoxylin channel of ``rgb2hed``, an Otsu threshold fixed once on real tiles, connected
  objects of nucleus size): count per megapixel and mean area, overall and per class region.
- :func:`detail_colour` / :func:`compare_detail_colour`: how much of the fine detail's colour
  variance lies off its first colour axis (real H&E: one stain-darkness direction), and how
  much detail there is.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu
from torch import nn

from model.config import NucleiConfig, TwoSampleConfig
from model.training.detail import detail_covariance, principal_axes

Images = list[np.ndarray]


# ---- classifier two-sample test --------------------------------------------------------------


def halves(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left and right halves of an (H, W, ...) array: the training and the test part."""
    mid = image.shape[1] // 2
    return image[:, :mid], image[:, mid:]


def _check_images(images: Images, patch: int, what: str) -> None:
    if not images:
        raise ValueError(f"the two-sample test needs images in {what}")
    for im in images:
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"{what}: expected uint8 (H, W, 3) images, got {im.dtype} {im.shape}")
        if im.shape[0] < patch or im.shape[1] < 2 * patch:
            raise ValueError(
                f"{what}: image {im.shape[:2]} is too small; each half must hold a {patch} px patch"
            )


def sample_patches(images: Images, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random ``size`` crops, images drawn uniformly: (n, size, size, 3) uint8."""
    out = np.empty((n, size, size, 3), np.uint8)
    which = rng.integers(0, len(images), n)
    for k, i in enumerate(which):
        h, w = images[i].shape[:2]
        top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        out[k] = images[i][top : top + size, left : left + size]
    return out


def grid_patches(images: Images, size: int, stride: int) -> np.ndarray:
    """Every ``size`` crop on a ``stride`` grid of every image: (N, size, size, 3) uint8."""
    out = [
        im[top : top + size, left : left + size]
        for im in images
        for top in range(0, im.shape[0] - size + 1, stride)
        for left in range(0, im.shape[1] - size + 1, stride)
    ]
    return np.stack(out)


class PatchClassifier(nn.Module):
    """Conv3x3 stem, three stride-2 conv blocks, global average pool, one logit.

    Args:
        width: channels of the stem (doubled by each stride-2 block).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = [nn.Conv2d(3, w[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for a, b in zip(w, w[1:], strict=False):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.GroupNorm(4, b), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(w[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, P, P) in [-1, 1] -> (B,) logits of "second set"."""
        return self.head(self.features(x).mean(dim=(2, 3)))[:, 0]


def _to_batch(patches: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2)  # (B, 3, P, P)
    return x.float() / 127.5 - 1


def _flip_rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One of the 8 dihedral transforms per batch: tissue has no preferred orientation."""
    k = int(torch.randint(0, 4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(2, 3))
    return x.flip(3) if torch.randint(0, 2, (1,), generator=gen).item() else x


def _train_classifier(a: Images, b: Images, cfg: TwoSampleConfig, seed: int) -> PatchClassifier:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PatchClassifier(cfg.width)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    half = max(1, cfg.batch_size // 2)
    labels = torch.cat([torch.zeros(half), torch.ones(half)])
    net.train()
    for _ in range(cfg.steps):
        patches = np.concatenate([sample_patches(a, half, cfg.patch, rng),
                                  sample_patches(b, half, cfg.patch, rng)])
        x = _flip_rotate(_to_batch(patches), gen)  # (2 * half, 3, P, P)
        loss = nn.functional.binary_cross_entropy_with_logits(net(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.inference_mode()
def _predict(net: PatchClassifier, patches: np.ndarray, batch: int = 256) -> np.ndarray:
    """Predicted label (0 or 1) per patch."""
    out = [(net(_to_batch(patches[i : i + batch])) > 0).numpy()
           for i in range(0, len(patches), batch)]
    return np.concatenate(out).astype(np.int64)


def two_sample_test(a: Images, b: Images, cfg: TwoSampleConfig | None = None, seed: int = 0
                    ) -> dict[str, Any]:
    """Train a patch classifier to tell set ``a`` from set ``b``; score it on unseen patches.

    Every image is split into halves: the classifier trains on random ``cfg.patch`` crops of
    the left halves (the two sets equally often) and is scored on a grid of crops of the right
    halves. Runs on the CPU in the calling thread settings (set ``torch.set_num_threads``).

    Args:
        a, b: uint8 (H, W, 3) images of the two sets (each half must hold a patch).
        cfg: patch size, step budget, learning rate, number of classifiers (``repeats``).
        seed: seeds the patches and the networks (same seed, same result).

    Returns:
        ``accuracy`` (balanced: mean of the per-set accuracies; 0.5 = indistinguishable) of
        the median classifier, every classifier's in ``accuracies``, the median one's per-set
        accuracies, patch counts and the settings.
    """
    cfg = cfg or TwoSampleConfig()
    if cfg.repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {cfg.repeats}")
    _check_images(a, cfg.patch, "the first set")
    _check_images(b, cfg.patch, "the second set")
    train_a, test_a = zip(*(halves(im) for im in a), strict=True)
    train_b, test_b = zip(*(halves(im) for im in b), strict=True)
    pa = grid_patches(list(test_a), cfg.patch, cfg.test_stride)
    pb = grid_patches(list(test_b), cfg.patch, cfg.test_stride)
    runs = []
    for k in range(cfg.repeats):
        net = _train_classifier(list(train_a), list(train_b), cfg, seed + k)
        runs.append((float(np.mean(_predict(net, pa) == 0)), float(np.mean(_predict(net, pb) == 1))))
    accuracies = [(acc_a + acc_b) / 2 for acc_a, acc_b in runs]
    median = sorted(range(len(runs)), key=lambda k: accuracies[k])[(len(runs) - 1) // 2]
    return {
        "accuracy": accuracies[median], "accuracies": accuracies,
        "accuracy_first": runs[median][0], "accuracy_second": runs[median][1],
        "n_images": [len(a), len(b)], "n_test_patches": [len(pa), len(pb)],
        "patch": cfg.patch, "steps": cfg.steps, "batch_size": cfg.batch_size, "seed": seed,
        "repeats": cfg.repeats,
        "split": "trained on the left halves, scored on the right halves; the median of the classifiers",
    }


def real_vs_real(images: Images, split: Literal["halves", "tiles"] = "halves",
                 cfg: TwoSampleConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """The two-sample test between two groups of the same real images: its floor.

    Args:
        images: real uint8 (H, W, 3) tiles.
        split: ``halves``: the top half of every tile against the bottom halves;
            ``tiles``: the even-numbered tiles against the odd-numbered ones (needs two).
        cfg, seed: as in :func:`two_sample_test`.
    """
    if split == "halves":
        tops = [im[: im.shape[0] // 2] for im in images]
        bottoms = [im[im.shape[0] // 2 :] for im in images]
        result = two_sample_test(tops, bottoms, cfg, seed)
    elif split == "tiles":
        if len(images) < 2:
            raise ValueError("split 'tiles' needs at least two real tiles")
        result = two_sample_test(images[0::2], images[1::2], cfg, seed)
    else:
        raise ValueError(f"unknown split {split!r}; choose halves or tiles")
    return {**result, "groups": split}


def blurred(images: Images, sigma: float) -> Images:
    """Each uint8 (H, W, 3) image under a Gaussian blur of ``sigma`` pixels (per channel)."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    return [ndi.gaussian_filter(im.astype(np.float32), (sigma, sigma, 0)).round().clip(0, 255)
            .astype(np.uint8) for im in images]


def two_sample_by_blur(a: Images, b: Images, floor: Images | None, cfg: TwoSampleConfig,
                       seed: int = 0) -> list[dict[str, Any]]:
    """The two-sample test after each Gaussian blur of ``cfg.blur_sigmas``, with its floor.

    A blur of sigma removes structure smaller than about 2 sigma; where the accuracy of
    ``a`` against ``b`` falls to the floor's, what told the sets apart was finer than that.

    Args:
        a, b: the two sets (e.g. real held-out crops and generated images).
        floor: real images of the floor set, tested against ``a`` under the same blur; None
            leaves the floor out.
        cfg: as in :func:`two_sample_test`; its ``blur_sigmas`` are the blurs.
        seed: as in :func:`two_sample_test`.

    Returns:
        One row per sigma: ``sigma``, ``accuracy`` (a against b, the median classifier's) and
        ``floor`` (a against ``floor``, None without one), and every classifier's in
        ``accuracies`` and ``floor_accuracies``.
    """
    rows = []
    for sigma in cfg.blur_sigmas:
        blur_a = blurred(a, sigma)
        test = two_sample_test(blur_a, blurred(b, sigma), cfg, seed)
        base = two_sample_test(blur_a, blurred(floor, sigma), cfg, seed) if floor else None
        rows.append({"sigma": sigma, "accuracy": test["accuracy"], "floor": base["accuracy"] if base else None,
                     "accuracies": test["accuracies"], "floor_accuracies": base["accuracies"] if base else None})
    return rows


# ---- nuclei by colour deconvolution ----------------------------------------------------------


def hematoxylin(image: np.ndarray) -> np.ndarray:
    """Haematoxylin optical density (H, W) of an RGB uint8 image (``rgb2hed`` channel 0)."""
    return np.asarray(rgb2hed(image)[..., 0], np.float32)


def fit_threshold(images: Images, cfg: NucleiConfig | None = None) -> float:
    """Otsu threshold of the haematoxylin density over the pooled pixels of real images.

    Args:
        images: real uint8 (H, W, 3) tiles (the threshold is then fixed for every image set).
        cfg: ``threshold_subsample`` thins the pixels per axis.
    """
    if not images:
        raise ValueError("fit_threshold needs at least one real image")
    s = (cfg or NucleiConfig()).threshold_subsample
    pooled = np.concatenate([hematoxylin(im[::s, ::s]).ravel() for im in images])
    return float(threshold_otsu(pooled))


def find_nuclei(image: np.ndarray, threshold: float, cfg: NucleiConfig | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei of one image: their areas (N,) in pixels and centroids (N, 2) as (row, col).

    Args:
        image: uint8 (H, W, 3).
        threshold: haematoxylin density above which a pixel is nuclear (:func:`fit_threshold`).
        cfg: nucleus size range and the opening.
    """
    cfg = cfg or NucleiConfig()
    fg = hematoxylin(image) > threshold
    if cfg.opening:
        fg = ndi.binary_opening(fg, iterations=cfg.opening)
    labels, n = ndi.label(fg)
    flat = labels.ravel()
    areas = np.bincount(flat, minlength=n + 1)[1:]
    rows, cols = np.indices(labels.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(flat, rows.ravel(), minlength=n + 1)[1:] / areas
        cx = np.bincount(flat, cols.ravel(), minlength=n + 1)[1:] / areas
    keep = (areas >= cfg.min_area) & (areas <= cfg.max_area)
    return areas[keep], np.stack([cy[keep], cx[keep]], axis=1)


def _summary(areas: list[np.ndarray], pixels: int, images: int) -> dict[str, Any]:
    flat = np.concatenate(areas) if areas else np.zeros(0)
    return {
        "count": int(flat.size),
        "per_image": flat.size / images if images else None,
        "per_megapixel": flat.size / (pixels / 1e6) if pixels else None,
        "mean_area": float(flat.mean()) if flat.size else None,
        "pixels": int(pixels),
    }


def nuclei_stats(images: Images, masks: Images, threshold: float, names: list[str],
                 cfg: NucleiConfig | None = None) -> dict[str, Any]:
    """Nucleus counts and mean areas of an image set, overall and per class region.

    A nucleus belongs to the class of the mask at its centroid; a class's density is its
    nuclei over its mask area.

    Args:
        images: uint8 (H, W, 3).
        masks: class-index masks (H, W), one per image.
        threshold: the haematoxylin threshold fixed on real tiles.
        names: class names (K).
        cfg: nucleus size range.
    """
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    overall: list[np.ndarray] = []
    per_class: list[list[np.ndarray]] = [[] for _ in names]
    class_pixels = np.zeros(len(names), np.int64)
    for image, mask in zip(images, masks, strict=True):
        if image.shape[:2] != mask.shape:
            raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
        areas, centres = find_nuclei(image, threshold, cfg)
        overall.append(areas)
        owner = mask[centres[:, 0].astype(int), centres[:, 1].astype(int)]
        for k in range(len(names)):
            per_class[k].append(areas[owner == k])
        class_pixels += np.bincount(mask.ravel(), minlength=len(names))[: len(names)]
    pixels = sum(m.size for m in masks)
    return {
        **_summary(overall, pixels, len(images)),
        "per_class": {n: _summary(per_class[k], int(class_pixels[k]), len(images))
                      for k, n in enumerate(names)},
    }


def _ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    def ratio(key: str) -> float | None:
        return a[key] / b[key] if a[key] is not None and b[key] else None

    return {"per_megapixel": ratio("per_megapixel"), "mean_area": ratio("mean_area")}


def nuclei_ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Ratios ``a / b`` of density and mean area, overall and per class (None where undefined).

    Args:
        a, b: :func:`nuclei_stats` results.
    """
    return {**_ratios(a, b),
            "per_class": {n: _ratios(a["per_class"][n], b["per_class"][n]) for n in a["per_class"]}}


def compare_nuclei(generated: Images, generated_masks: Images, real: Images, real_masks: Images,
                   reference: Images, reference_masks: Images, names: list[str],
                   cfg: NucleiConfig | None = None) -> dict[str, Any]:
    """Nuclei of generated images against real ones, beside the real-vs-real floor.

    The threshold is fitted once on all real images (``real`` and ``reference``).

    Args:
        generated, generated_masks: generated images and the masks they came from.
        real, real_masks: the real images those masks belong to (e.g. held-out crops).
        reference, reference_masks: other real images (e.g. training crops): the floor
            ``reference / real`` says how far two real sets differ.
        names: class names.
        cfg: nucleus size range and threshold sampling.
    """
    cfg = cfg or NucleiConfig()
    threshold = fit_threshold([*real, *reference], cfg)
    gen = nuclei_stats(generated, generated_masks, threshold, names, cfg)
    ref = nuclei_stats(real, real_masks, threshold, names, cfg)
    out: dict[str, Any] = {
        "threshold": threshold, "area_range_px": [cfg.min_area, cfg.max_area],
        "generated": gen, "real": ref, "ratio": nuclei_ratios(gen, ref),
        "reference": None, "ratio_reference_vs_real": None,
    }
    if reference:
        other = nuclei_stats(reference, reference_masks, threshold, names, cfg)
        out["reference"], out["ratio_reference_vs_real"] = other, nuclei_ratios(other, ref)
    return out


# ---- colour of fine detail ----------------------------------------------------------------


def detail_colour(images: Images, pool: int) -> dict[str, Any]:
    """How the fine detail of an image set varies in colour.

    The detail is each image minus the bilinear upsampling of its ``pool``-times pooled copy
    (:func:`model.training.detail.detail`, [-1, 1] RGB). Its 3x3 colour covariance, pooled
    over the images, gives ``off_axis``: the share of the detail's variance off its first
    principal colour axis (0: every pixel's detail is one colour direction, the darker or
    lighter stain; real H&E at 2-8 px: about 0.01-0.02), the ``axis`` itself and the
    ``variance`` (the covariance's trace: how much detail there is).
    """
    axes, variances = principal_axes(detail_covariance(images, "residual", pool))
    total = float(variances.sum())
    return {"off_axis": float(1 - variances[0] / total) if total > 0 else None,  # no detail: no axis
            "variance": total, "axis": axes[:, 0].tolist()}


def compare_detail_colour(generated: Images, real: Images, reference: Images | None,
                          pools: tuple[int, ...] = (2, 8)) -> dict[str, Any]:
    """:func:`detail_colour` of generated, real and reference (the floor's real training)
    images at each detail scale, with the off-axis shares and variances generated / real and
    reference / real."""
    def ratio(a: dict[str, Any] | None, b: dict[str, Any], key: str) -> float | None:
        return a[key] / b[key] if a is not None and a[key] is not None and b[key] else None

    rows = []
    for pool in pools:
        gen, ref_real = detail_colour(generated, pool), detail_colour(real, pool)
        ref = detail_colour(reference, pool) if reference else None
        rows.append({
            "pool": pool, "generated": gen, "real": ref_real, "reference": ref,
            "off_axis_ratio": ratio(gen, ref_real, "off_axis"),
            "variance_ratio": ratio(gen, ref_real, "variance"),
            "reference_off_axis_ratio": ratio(ref, ref_real, "off_axis"),
            "reference_variance_ratio": ratio(ref, ref_real, "variance"),
        })
    return {"by_pool": rows,
            "note": "detail = image - upsampled pooled image; off_axis = its colour variance off the "
                    "first principal colour axis; reference = the real training crops (the floor)"}
