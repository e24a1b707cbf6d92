"""Training each compared method, the three experiments (generation, supervised, ssl) and
:func:`run_experiment`, which runs one of them and writes its tables."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.baselines.config import baseline_preset
from model.config import NucleiConfig, replace
from model.evaluation import metrics as M
from model.evaluation.evaluate import evaluate, to_jsonable
from model.experiments import tables
from model.experiments.setup import (
    METHODS,
    OURS_MODE,
    Method,
    Setup,
    crop_tiles,
    describe,
    make_setup,
)

# ---- training ----------------------------------------------------------------------------


def train_method(
    setup: Setup, method: Method, run_dir: Path, *, fraction: float = 1.0, seed: int = 0
) -> Path:
    """Train one method (or reuse its finished run) and return its serving file.

    Args:
        setup: the experiment.
        method: what to train.
        run_dir: its run directory.
        fraction: labelled fraction (``ssl``).
        seed: seeds the labelled split and the networks.
    """
    if (run_dir / "model.pt").is_file():
        setup.log(f"  reusing {run_dir / 'model.pt'}")
        return run_dir / "model.pt"
    eval_images = setup.held[0] if method.transductive else None
    meta = {
        "experiment": setup.name,
        "budget": setup.budget_name,
        "method": method.label,
        "labeled_fraction": fraction,
        "held_out": setup.holdout,
    }
    started = time.perf_counter()
    changes: dict[str, Any] = {
        "seed": seed,
        "labeled_fraction": fraction,
        "transductive": method.transductive,
    }
    if setup.device:
        changes["device"] = setup.device
    if method.arch == "ours":
        path = _train_ours(setup, run_dir, changes, eval_images, meta)
    else:
        path = _train_baseline(setup, method, run_dir, changes, eval_images, meta)
    setup.log(f"  trained {method.label} in {time.perf_counter() - started:.0f} s")
    return path


def _train_ours(
    setup: Setup,
    run_dir: Path,
    changes: dict[str, Any],
    eval_images: list[np.ndarray] | None,
    meta: dict[str, Any],
) -> Path:
    from model.training.train import train

    pre = setup.budget.ours
    changes = {**changes, "mode": OURS_MODE[setup.name]}
    if setup.perceptual_weights:
        changes["perceptual_weights"] = setup.perceptual_weights
    model_cfg = replace(pre.model, num_classes=setup.dataset.classes.num_classes)
    result = train(
        model_cfg,
        replace(pre.train, **changes),
        setup.train,
        run_dir,
        name=f"ours-{setup.name}",
        resume=(run_dir / "state.pt").exists(),
        eval_images=eval_images,
        metadata=meta,
    )
    assert result.model_path is not None
    return result.model_path


def _train_baseline(
    setup: Setup,
    method: Method,
    run_dir: Path,
    changes: dict[str, Any],
    eval_images: list[np.ndarray] | None,
    meta: dict[str, Any],
) -> Path:
    from model.baselines.train import train_baseline

    pre = baseline_preset(method.arch, setup.budget.baselines)
    if setup.perceptual_weights and pre.train.perc:
        changes = {**changes, "perceptual_weights": setup.perceptual_weights}
    model_cfg = replace(pre.model, num_classes=setup.dataset.classes.num_classes)
    result = train_baseline(
        model_cfg,
        replace(pre.train, **changes),
        setup.train,
        run_dir,
        name=f"{method.arch}-{setup.name}",
        eval_images=eval_images,
        metadata=meta,
    )
    assert result.model_path is not None
    return result.model_path


def _load(path: Path, device: str | None) -> Any:
    from model.pipeline import load_pipeline

    return load_pipeline(path, device or "auto")


def _wall_time(pipe: Any) -> float | None:
    return pipe.metadata.get("wall_time_s")


# ---- the three experiments ---------------------------------------------------------------


def run_generation(setup: Setup) -> dict[str, Any]:
    """Train the generators and the judge, evaluate each on held-out crops (see module doc)."""
    runs = setup.runs_dir
    setup.log("judge: m-FC-DenseNet + pyramid on the real training pairs")
    judge = _load(
        train_method(setup, Method("judge", "fcdensenet-pyramid"), runs / "judge"), setup.device
    )
    crops = crop_tiles(setup.dataset, setup.budget.crop)
    held = [n for n in crops.names if n.split("@")[0] in setup.holdout]
    train = [n for n in crops.names if n.split("@")[0] not in setup.holdout]
    rows = []
    for method in METHODS["generation"]:
        setup.log(f"{method.label}:")
        pipe = _load(train_method(setup, method, runs / method.arch), setup.device)
        report = evaluate(
            pipe,
            crops,
            holdout=held,
            train_names=train,
            variants=setup.budget.variants,
            crop=None,
            seed=0,
            segmenter=judge,
            extractor=setup.extractor,
            two_sample=setup.budget.two_sample,
            nuclei=NucleiConfig().at_downscale(setup.budget.downscale),
        )
        rows.append(tables.generation_row(method.label, report, _wall_time(pipe)))
    return {
        "rows": rows,
        "reference": tables.generation_reference(report),
        "judge": {"name": judge.name, "arch": "fcdensenet-pyramid"},
        "crops": {"held_out": len(held), "train": len(train), "side": setup.budget.crop},
    }


def segmentation_report(
    pipe: Any, images: list[np.ndarray], masks: list[np.ndarray], names: list[str]
) -> dict[str, Any]:
    """Jaccard per class, mIoU, OPA, SMA of ``pipe.segment``; GlaS object metrics if binary.

    Args:
        pipe: anything with ``segment(image) -> (H, W)`` class map.
        images: uint8 (H, W, 3) images.
        masks: their class-index masks.
        names: class names (K = len(names)).
    """
    preds = [pipe.segment(im) for im in images]
    scores = M.segmentation_scores(preds, masks, len(names), names)
    if len(names) == 2:
        objects = M.object_scores(preds, masks)
        scores.update({k: objects[k] for k in ("object_f1", "object_dice", "object_hausdorff")})
    return scores


def run_supervised(setup: Setup) -> dict[str, Any]:
    """Train the segmenters on every training pair, score them on the held-out images."""
    runs = setup.runs_dir
    images, masks = setup.held
    names = list(setup.dataset.classes.names)
    rows = []
    for method in METHODS["supervised"]:
        setup.log(f"{method.label}:")
        pipe = _load(train_method(setup, method, runs / method.arch), setup.device)
        rows.append(
            {
                "method": method.label,
                "train_s": _wall_time(pipe),
                **segmentation_report(pipe, images, masks, names),
            }
        )
    return {"rows": rows}


def run_ssl(setup: Setup, seeds: int) -> dict[str, Any]:
    """Every method at every labelled fraction and seed; scores per run and their spread."""
    runs = setup.runs_dir
    images, masks = setup.held
    names = list(setup.dataset.classes.names)
    per_run: list[dict[str, Any]] = []
    total, done = seeds * len(setup.budget.fractions) * len(METHODS["ssl"]), 0
    for seed in range(seeds):
        for fraction in setup.budget.fractions:
            for method in METHODS["ssl"]:
                done += 1
                setup.log(f"[{done}/{total}] {method.label}, {fraction:.0%} labelled, seed {seed}:")
                key = f"{method.arch}{'-transductive' if method.transductive else ''}"
                run_dir = runs / f"{key}-f{round(fraction * 100)}-s{seed}"
                pipe = _load(
                    train_method(setup, method, run_dir, fraction=fraction, seed=seed), setup.device
                )
                scores = segmentation_report(pipe, images, masks, names)
                per_run.append(
                    {
                        "method": method.label,
                        "fraction": fraction,
                        "seed": seed,
                        "train_s": _wall_time(pipe),
                        **scores,
                    }
                )
    return {
        "runs": per_run,
        "summary": tables.ssl_summary(per_run, METHODS["ssl"], binary=len(names) == 2),
    }


def run_experiment(
    name: str,
    data: str | Path,
    out: str | Path,
    *,
    budget: str = "small",
    holdout: list[str] | None = None,
    seeds: int | None = None,
    inception: str | None = None,
    classes: str | None = None,
    layout: str = "folder",
    device: str | None = None,
    perceptual_weights: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one experiment and write ``OUT/<name>.md`` and ``OUT/<name>.json``.

    Args:
        name: generation, supervised or ssl.
        data: dataset folder (images/, masks/, classes.json).
        out: output folder (runs and results).
        budget: toy (seconds), small (about an hour on a 2-core CPU), paper (GPU).
        holdout: image stems held out for evaluation (default: the budget's count, last names).
        seeds: ssl runs per fraction (default: the budget's).
        inception: local TorchScript Inception-v3 for FID/KID (default: random-conv features).
        classes, layout: as for ``load_dataset``.
        device: auto, cpu or cuda for every run (default: each config's).
        perceptual_weights: VGG19 weights for ours and pix2pixHD (default: the term is off).
        log: progress lines (default: stderr).
    """
    setup = make_setup(
        name,
        data,
        out,
        budget,
        holdout,
        inception,
        classes,
        layout,
        device,
        perceptual_weights,
        log,
    )
    started = time.perf_counter()
    if name == "generation":
        result = run_generation(setup)
    elif name == "supervised":
        result = run_supervised(setup)
    else:
        result = run_ssl(setup, seeds if seeds is not None else setup.budget.seeds)
    result = to_jsonable(
        {
            "experiment": name,
            "setup": describe(setup, seeds),
            **result,
            "paper": tables.PAPER.get(name),
            "wall_time_s": time.perf_counter() - started,
        }
    )
    setup.out.mkdir(parents=True, exist_ok=True)
    (setup.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (setup.out / f"{name}.md").write_text(tables.markdown(result))
    setup.log(f"wrote {setup.out / f'{name}.md'} and {setup.out / f'{name}.json'}")
    return result
