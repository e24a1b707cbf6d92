"""``histosynth experiment augmentation``: do a generator's synthetic pairs help a segmenter?

For each seed, one m-FC-DenseNet (the baseline segmenter, trained by
:func:`model.baselines.train.train_baseline`) learns from the real training pairs alone, and
one per (synthetic pairs per mask, mixing) from the real pairs plus the synthetic pairs that
the augmentation job writes for the training masks with that seed (same plan, pair seeds and
generation: :mod:`model.augmentation`), with the same steps, tiles and seed. Every segmenter
is scored on the held-out tiles, which never enter training nor give masks to the generator.

Synthetic pairs are generated at the generator's resolution and then downscaled like the real
tiles. Runs live in ``OUT/runs/augmentation/<budget>-<model>-<digest>-holdout-<names>-...``;
a finished run whose ``run.json`` matches is reused.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.augmentation import TRANSFORMS, PairMaker, plan_pairs
from model.config import replace, to_dict
from model.experiments import augmentation_report as report
from model.experiments.config import AUGMENTATION_BUDGETS, AugmentationBudget
from model.experiments.runs import segmentation_report
from model.experiments.setup import default_holdout, downscale, subset
from model.imageio import IMAGE_SUFFIXES, read_image, read_mask
from model.inference import Pipeline
from model.training.data import Dataset, TileSampler, load_dataset

# ---- mixings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mixing:
    """How synthetic tiles enter the segmenter's batches.

    Args:
        label: table label.
        share: synthetic share of each batch; None: pooled, every pair equally likely.
        pretrain: this first fraction of the steps draws synthetic tiles only.
    """

    label: str
    share: float | None
    pretrain: float = 0.0

    def schedule(self, steps: int, pooled: float) -> Callable[[int], float]:
        """Synthetic share of batch ``i`` of ``steps`` (``pooled``: synthetic / all pairs)."""
        switch = round(self.pretrain * steps)
        after = pooled if self.share is None else self.share
        return lambda i: 1.0 if i < switch else after


MIXINGS: dict[str, Mixing] = {
    "pooled": Mixing("real + synthetic, pooled", None),
    "share25": Mixing("real + synthetic, 25 % of each batch", 0.25),
    "share50": Mixing("real + synthetic, 50 % of each batch", 0.5),
    "pretrain": Mixing("synthetic pre-training (first half), real fine-tuning", 0.0, 0.5),
    "synthetic-only": Mixing("synthetic only", 1.0),
}
REAL_ONLY = "real-only"


class MixedSampler:
    """Batches with a scheduled share of synthetic tiles (stochastic rounding per batch).

    Args:
        real: tiles of the real pairs.
        synthetic: tiles of the synthetic pairs (None: real only).
        share: synthetic share of the ``i``-th batch drawn.
        seed: seeds the rounding.
    """

    def __init__(self, real: TileSampler, synthetic: TileSampler | None,
                 share: Callable[[int], float], seed: int) -> None:
        self.real, self.synthetic, self.share = real, synthetic, share
        self.rng = np.random.default_rng(seed)
        self.draws = 0

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, 3, T, T) and labels (B, T, T): real tiles first, then synthetic ones."""
        exact = batch * (self.share(self.draws) if self.synthetic is not None else 0.0)
        self.draws += 1
        n_syn = int(exact) + int(self.rng.random() < exact - int(exact))
        parts = [self.real.sample(batch - n_syn)] if batch > n_syn else []
        if n_syn and self.synthetic is not None:
            parts.append(self.synthetic.sample(n_syn))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])  # type: ignore[misc]


# ---- setup -------------------------------------------------------------------------------


@dataclass
class AugSetup:
    """Everything the runs share."""

    budget_name: str
    budget: AugmentationBudget
    pipe: Pipeline  # the generator
    dataset: Dataset  # every tile, downscaled
    train: Dataset  # the training tiles, downscaled
    mask_files: dict[str, Path]  # training tiles' mask files (full size)
    holdout: list[str]
    seeds: int
    per_mask: tuple[int, ...]
    mixings: tuple[str, ...]
    transforms: str
    noise: float
    relabel: dict[str, str]
    runs: Path
    device: str | None
    log: Callable[[str], None]

    def identity(self) -> dict[str, Any]:
        """What decides every run's result apart from its seed, amount and mixing."""
        return {
            "budget": self.budget_name, "budget_config": to_dict(self.budget),
            "generator_sha256": self.pipe.sha256, "holdout": self.holdout,
            "train": self.train.names, "classes": list(self.dataset.classes.names),
            "transforms": self.transforms, "noise": self.noise, "relabel": self.relabel,
            "device": self.device,
        }


def run_dir_name(budget: str, model: str, sha256: str, holdout: list[str], transforms: str,
                 noise: float, relabel: dict[str, str]) -> str:
    """The folder of one generator's runs: budget, model, digest, held-out tiles, pair options."""
    name = f"{budget}-{model}-{sha256[:12]}-holdout-{'+'.join(sorted(holdout))}-{transforms}-noise{noise:g}"
    if relabel:
        name += "-relabel-" + "+".join(f"{a}={b}" for a, b in sorted(relabel.items()))
    return name


def _check_options(per_mask: tuple[int, ...], mixings: tuple[str, ...], transforms: str,
                   seeds: int) -> None:
    if transforms not in TRANSFORMS:
        raise ValueError(f"unknown transforms {transforms!r}; choose one of {', '.join(TRANSFORMS)}")
    unknown = [m for m in mixings if m not in MIXINGS]
    if unknown:
        raise ValueError(f"unknown mixings {unknown}; choose from {', '.join(MIXINGS)}")
    shapes = len(TRANSFORMS[transforms])
    bad = [n for n in per_mask if n < 0 or n % shapes]
    if bad or not per_mask:
        raise ValueError(f"synthetic pairs per mask must be >= 0 and multiples of {shapes} "
                         f"(transforms {transforms!r}), got {list(per_mask) or 'none'}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")


def _mask_files(root: str, names: list[str]) -> dict[str, Path]:
    files = {p.stem: p for p in sorted(Path(root, "masks").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    return {n: files[n] for n in names}


def make_setup(data: str | Path, model: str | Path, out: str | Path, budget: str,
               holdout: list[str] | None, seeds: int | None, per_mask: tuple[int, ...] | None,
               mixings: tuple[str, ...] | None, transforms: str, noise: float,
               relabel: dict[str, str] | None, classes: str | None, device: str | None,
               log: Callable[[str], None] | None) -> AugSetup:
    from model.pipeline import load_pipeline

    if budget not in AUGMENTATION_BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(AUGMENTATION_BUDGETS)}")
    b = AUGMENTATION_BUDGETS[budget]
    seeds, per_mask = seeds or b.seeds, tuple(per_mask if per_mask is not None else b.per_mask)
    mixings = tuple(mixings if mixings is not None else b.mixings)
    _check_options(per_mask, mixings, transforms, seeds)
    pipe = load_pipeline(model, device or "auto")
    dataset = downscale(load_dataset(data, classes or pipe.classes), b.downscale)
    if list(dataset.classes.names) != list(pipe.classes.names):
        raise ValueError(f"the generator's classes {list(pipe.classes.names)} differ from the "
                         f"dataset's {list(dataset.classes.names)}; pass the model's --classes")
    held = list(holdout) if holdout else default_holdout(dataset.names, b.holdout)
    unknown = [n for n in held if n not in dataset.names]
    if unknown:
        raise ValueError(f"held-out names {unknown} are not in the dataset ({', '.join(dataset.names)})")
    train = subset(dataset, [n for n in dataset.names if n not in held])
    if not train.names:
        raise ValueError("every image is held out; keep at least one for training")
    relabel = dict(relabel or {})
    runs = Path(out) / "runs" / "augmentation" / run_dir_name(
        budget, pipe.name, pipe.sha256, held, transforms, noise, relabel)
    return AugSetup(budget, b, pipe, dataset, train, _mask_files(dataset.root, train.names), held,
                    seeds, per_mask, mixings, transforms, noise, relabel, runs, device,
                    log or (lambda s: print(s, file=sys.stderr)))


# ---- synthetic pairs ----------------------------------------------------------------------


def synthetic_pairs(pipe: Pipeline, mask_files: dict[str, Path], per_mask: int, seed: int,
                    transforms: str = "none", noise: float = 1.0,
                    relabel: dict[str, str] | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, image, class indices) of every pair that ``histosynth augment`` writes for these
    masks with ``--variants per_mask / len(transforms) --transforms T --seed seed --noise``."""
    shapes = TRANSFORMS[transforms]
    keys = {f"masks/{path.name}": path for path in mask_files.values()}
    maker = PairMaker(pipe, lambda key: read_mask(keys[key]), noise, relabel)
    plan = plan_pairs(sorted(keys), shapes, per_mask // len(shapes), seed)
    return [(pair.stem, *maker.make(pair)) for pair in plan]


def load_synthetic(setup: AugSetup, per_mask: int, seed: int) -> Dataset:
    """The downscaled synthetic pairs of (amount, seed), generated once into the runs folder."""
    from PIL import Image

    folder = setup.runs / "synthetic" / f"s{seed}-n{per_mask}"
    if not (folder / "done.json").is_file():
        setup.log(f"  generating {per_mask} synthetic pairs per training mask, seed {seed}")
        pairs = synthetic_pairs(setup.pipe, setup.mask_files, per_mask, seed, setup.transforms,
                                setup.noise, setup.relabel)
        small = downscale(Dataset(setup.dataset.classes, [p[0] for p in pairs], [p[1] for p in pairs],
                                  [p[2] for p in pairs]), setup.budget.downscale)
        for sub in ("images", "masks"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for stem, image, labels in zip(small.names, small.images, small.masks, strict=True):
            Image.fromarray(image).save(folder / "images" / f"{stem}.png")
            Image.fromarray(labels.astype(np.uint8)).save(folder / "masks" / f"{stem}.png")
        (folder / "done.json").write_text(json.dumps({"pairs": small.names, "seed": seed}))
    stems = json.loads((folder / "done.json").read_text())["pairs"]
    return Dataset(setup.dataset.classes, stems,
                   [read_image(folder / "images" / f"{s}.png") for s in stems],
                   [read_mask(folder / "masks" / f"{s}.png").astype(np.int64) for s in stems])


# ---- runs --------------------------------------------------------------------------------


def train_segmenter(setup: AugSetup, seed: int, per_mask: int, mixing: str,
                    synthetic: Dataset | None) -> Path:
    """Train (or reuse) the m-FC-DenseNet of one row and seed; its serving file."""
    from model.baselines.config import baseline_preset
    from model.baselines.train import train_baseline

    name = f"s{seed}-{REAL_ONLY}" if synthetic is None else f"s{seed}-n{per_mask}-{mixing}"
    run_dir = setup.runs / name
    identity = json.loads(json.dumps({**setup.identity(), "seed": seed, "per_mask": per_mask,
                                      "mixing": mixing}))  # as run.json reads back
    if (run_dir / "model.pt").is_file() and _read_json(run_dir / "run.json") == identity:
        setup.log(f"  reusing {run_dir / 'model.pt'}")
        return run_dir / "model.pt"
    pre = baseline_preset("fcdensenet", setup.budget.segmenter)
    changes: dict[str, Any] = {"seed": seed, **({"device": setup.device} if setup.device else {})}
    if setup.budget.steps:
        changes["steps"] = setup.budget.steps
    cfg = replace(pre.train, **changes)
    real = TileSampler(setup.train.images, setup.train.masks, cfg.tile_size, cfg.tile_overlap,
                       cfg.color_jitter, seed)
    syn, share = None, MIXINGS["pooled"].schedule(cfg.steps, 0.0)
    if synthetic is not None:
        syn = TileSampler(synthetic.images, synthetic.masks, cfg.tile_size, cfg.tile_overlap,
                          cfg.color_jitter, seed + 1)
        share = MIXINGS[mixing].schedule(cfg.steps, len(synthetic) / (len(synthetic) + len(setup.train)))
    meta = {"experiment": "augmentation", "held_out": setup.holdout, "mixing": mixing,
            "synthetic_pairs": [] if synthetic is None else synthetic.names}
    train_baseline(replace(pre.model, num_classes=setup.dataset.classes.num_classes), cfg, setup.train,
                   run_dir, name=f"augmentation-{name}", metadata=meta,
                   sampler=MixedSampler(real, syn, share, seed + 2))
    (run_dir / "run.json").write_text(json.dumps(identity, indent=2))
    return run_dir / "model.pt"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _score(setup: AugSetup, path: Path) -> dict[str, Any]:
    from model.pipeline import load_pipeline

    pipe = load_pipeline(path, setup.device or "auto")
    idx = [setup.dataset.names.index(n) for n in setup.holdout]
    scores = segmentation_report(pipe, [setup.dataset.images[i] for i in idx],
                                 [setup.dataset.masks[i] for i in idx], list(setup.dataset.classes.names))
    return {"train_s": pipe.metadata.get("wall_time_s"), **scores}


def run_rows(setup: AugSetup, on_row: Callable[[list[dict[str, Any]], int], object]) -> list[dict[str, Any]]:
    """Every (seed, amount, mixing) run with its held-out scores; ``on_row(rows, total)``
    after each."""
    amounts = [n for n in setup.per_mask if n > 0]
    total = setup.seeds * ((0 in setup.per_mask) + len(amounts) * len(setup.mixings))
    rows: list[dict[str, Any]] = []
    for seed in range(setup.seeds):
        plan: list[tuple[int, str]] = [(0, REAL_ONLY)] if 0 in setup.per_mask else []
        plan += [(n, m) for n in amounts for m in setup.mixings]
        for per_mask, mixing in plan:
            setup.log(f"[{len(rows) + 1}/{total}] seed {seed}, {per_mask} synthetic per mask, {mixing}:")
            synthetic = load_synthetic(setup, per_mask, seed) if per_mask else None
            started = time.perf_counter()
            path = train_segmenter(setup, seed, per_mask, mixing, synthetic)
            rows.append({"seed": seed, "per_mask": per_mask, "mixing": mixing,
                         "synthetic_pairs": 0 if synthetic is None else len(synthetic),
                         **_score(setup, path)})
            setup.log(f"  mIoU {rows[-1]['miou']:.3f} ({time.perf_counter() - started:.0f} s)")
            on_row(rows, total)
    return rows


# ---- entry point -------------------------------------------------------------------------


def run_augmentation(data: str | Path, model: str | Path, out: str | Path, *, budget: str = "small",
                     holdout: list[str] | None = None, seeds: int | None = None,
                     per_mask: tuple[int, ...] | None = None, mixings: tuple[str, ...] | None = None,
                     transforms: str = "none", noise: float = 1.0,
                     relabel: dict[str, str] | None = None, classes: str | None = None,
                     device: str | None = None,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the experiment for one generator; add it to ``OUT/augmentation.{md,json}``.

    Args:
        data: dataset folder (images/, masks/, classes.json).
        model: the generator's serving file (ours).
        out: output folder (runs and results).
        budget: toy (seconds), small (about 30 min on one CPU thread), paper (GPU).
        holdout: held-out tile stems (default: the budget's count, last names).
        seeds: runs per row (default: the budget's).
        per_mask: synthetic pairs per training mask; 0 is the real-only row.
        mixings: keys of :data:`MIXINGS` for every non-zero amount.
        transforms, noise, relabel: as for the augmentation job.
        classes: class table JSON (default: the generator's).
        device: auto, cpu or cuda (default: auto).
        log: progress lines (default: stderr).
    """
    started = time.perf_counter()
    setup = make_setup(data, model, out, budget, holdout, seeds, per_mask, mixings, transforms,
                       noise, relabel, classes, device, log)
    described = {
        "model": setup.pipe.name, "model_file": str(model), "sha256": setup.pipe.sha256,
        "data": setup.dataset.root, "seeds": setup.seeds, "per_mask": list(setup.per_mask),
        "mixings": {m: MIXINGS[m].label for m in setup.mixings}, "image_shapes":
        [list(i.shape[:2]) for i in setup.dataset.images], "command": "histosynth " + " ".join(sys.argv[1:]),
    }

    def save(rows: list[dict[str, Any]], total: int) -> dict[str, Any]:
        # after every run, so an interrupted experiment leaves its table so far
        entry = report.result(setup.identity(), {**described, "runs_done": f"{len(rows)} of {total}"},
                              rows, time.perf_counter() - started)
        report.write(Path(out), entry)
        return entry

    rows = run_rows(setup, save)
    result = save(rows, len(rows))
    setup.log(f"wrote {Path(out) / 'augmentation.md'} and {Path(out) / 'augmentation.json'}")
    return result
