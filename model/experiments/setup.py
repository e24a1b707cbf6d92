"""Experiment setup: compared methods, budgets, data (downscaled, held out, cropped)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.config import to_dict
from model.evaluation import metrics as M
from model.experiments.config import EXPERIMENT_BUDGETS, ExperimentBudget
from model.training.data import Dataset, load_dataset, resize_image, resize_mask, tile_positions

EXPERIMENTS = ("generation", "supervised", "ssl")


@dataclass(frozen=True)
class Method:
    """A compared method: table label, arch, and whether evaluation images join its pool."""

    label: str
    arch: str
    transductive: bool = False


METHODS: dict[str, tuple[Method, ...]] = {
    "generation": (
        Method("pix2pix", "pix2pix"),
        Method("pix2pixHD", "pix2pixhd"),
        Method("ours", "ours"),
    ),
    "supervised": (
        Method("m-FC-DenseNet", "fcdensenet"),
        Method("m-FC-DenseNet + pyramid", "fcdensenet-pyramid"),
        Method("ours", "ours"),
    ),
    "ssl": (
        Method("m-FC-DenseNet", "fcdensenet"),
        Method("m-FC-DenseNet + pyramid", "fcdensenet-pyramid"),
        Method("consistency-based (mean teacher)", "mean-teacher"),
        Method("consistency-based (mean teacher, transductive)", "mean-teacher", True),
        Method("ours", "ours"),
        Method("ours (transductive)", "ours", True),
    ),
}
OURS_MODE = {"generation": "generate", "supervised": "joint", "ssl": "ssl"}


@dataclass
class Setup:
    """Data, budget and options shared by every run of an experiment."""

    name: str
    budget_name: str
    budget: ExperimentBudget
    dataset: Dataset  # every image (after downscaling)
    train: Dataset  # the training images only
    holdout: list[str]
    out: Path
    device: str | None
    perceptual_weights: str | None
    extractor: M.FeatureExtractor
    log: Callable[[str], None]

    @property
    def runs_dir(self) -> Path:
        """Where this experiment's models are trained and reused from.

        The folder names the budget and the held-out tiles (a digest of their names), so a
        rerun with another budget or hold-out trains anew instead of reusing models that
        saw other data or had another training length.
        """
        digest = hashlib.sha256("\n".join(sorted(self.holdout)).encode()).hexdigest()[:10]
        key = f"{self.budget_name}-holdout{len(self.holdout)}-{digest}"
        return self.out / "runs" / self.name / key

    @property
    def held(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Held-out images and masks."""
        idx = [self.dataset.names.index(n) for n in self.holdout]
        return [self.dataset.images[i] for i in idx], [self.dataset.masks[i] for i in idx]


# ---- data --------------------------------------------------------------------------------


def downscale(ds: Dataset, factor: int) -> Dataset:
    """Every image (bilinear) and mask (nearest) shrunk by ``factor`` (1: unchanged)."""
    if factor == 1:
        return ds

    def size(a: np.ndarray) -> tuple[int, int]:
        return max(1, a.shape[0] // factor), max(1, a.shape[1] // factor)

    return Dataset(
        ds.classes,
        list(ds.names),
        [resize_image(i, size(i)) for i in ds.images],
        [resize_mask(m, size(m)) for m in ds.masks],
        [resize_image(i, size(i)) for i in ds.unlabeled],
        ds.root,
    )


def subset(ds: Dataset, names: list[str]) -> Dataset:
    """The labelled images named (in that order), with the dataset's unlabelled images."""
    idx = [ds.names.index(n) for n in names]
    return Dataset(
        ds.classes,
        list(names),
        [ds.images[i] for i in idx],
        [ds.masks[i] for i in idx],
        list(ds.unlabeled),
        ds.root,
    )


def crop_tiles(ds: Dataset, side: int | None) -> Dataset:
    """Every image cut into ``side`` crops covering it (names ``stem@top,left``); None: as is."""
    if side is None:
        return ds
    names, images, masks = [], [], []
    for name, image, mask in zip(ds.names, ds.images, ds.masks, strict=True):
        h, w = image.shape[:2]
        s = min(side, h, w)
        for top, left in tile_positions(h, w, s, 0):
            names.append(f"{name}@{top},{left}")
            images.append(image[top : top + s, left : left + s])
            masks.append(mask[top : top + s, left : left + s])
    return Dataset(ds.classes, names, images, masks, [], ds.root)


def default_holdout(names: list[str], count: int) -> list[str]:
    """The last ``count`` names in sorted order (at least one image must stay for training)."""
    if count >= len(names):
        raise ValueError(
            f"cannot hold out {count} of {len(names)} images; name them with --holdout"
        )
    return sorted(names)[-count:]


def make_setup(
    name: str,
    data: str | Path,
    out: str | Path,
    budget: str,
    holdout: list[str] | None,
    inception: str | None,
    classes: str | None,
    layout: str,
    device: str | None,
    perceptual_weights: str | None,
    log: Callable[[str], None] | None,
) -> Setup:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    if budget not in EXPERIMENT_BUDGETS:
        raise ValueError(
            f"unknown budget {budget!r}; choose one of {', '.join(EXPERIMENT_BUDGETS)}"
        )
    b = EXPERIMENT_BUDGETS[budget][name]
    loaded = load_dataset(data, classes, layout=layout)  # type: ignore[arg-type]
    dataset = downscale(loaded, b.downscale)
    held = list(holdout) if holdout else default_holdout(dataset.names, b.holdout)
    unknown = [n for n in held if n not in dataset.names]
    if unknown:
        raise ValueError(
            f"held-out names {unknown} are not in the dataset ({', '.join(dataset.names)})"
        )
    train = subset(dataset, [n for n in dataset.names if n not in held])
    if not train.names:
        raise ValueError("every image is held out; keep at least one for training")
    return Setup(
        name,
        budget,
        b,
        dataset,
        train,
        held,
        Path(out),
        device,
        perceptual_weights,
        M.make_extractor(inception),
        log or (lambda s: print(s, file=sys.stderr)),
    )


def describe(setup: Setup, seeds: int | None) -> dict[str, Any]:
    return {
        "budget": setup.budget_name,
        "budget_config": to_dict(setup.budget),
        "data": setup.dataset.root,
        "classes": list(setup.dataset.classes.names),
        "holdout": setup.holdout,
        "train": setup.train.names,
        "image_shapes": [list(i.shape[:2]) for i in setup.dataset.images],
        "seeds": seeds if seeds is not None else setup.budget.seeds,
        "extractor": setup.extractor.name,
        "device": setup.device or "auto",
        "perceptual_weights": setup.perceptual_weights,
        "command": "histosynth " + " ".join(sys.argv[1:]),
    }
