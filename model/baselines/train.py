"""One training entry for every baseline: ``train_baseline`` (the baseline twin of
:func:`model.training.train.train`, with the same ``Progress``/``TrainResult`` and run directory:
config.json, metrics.jsonl, losses.png, model.pt). Baselines do not resume: a stopped run
returns ``stopped=True`` without a model.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from model import report
from model.baselines.config import BaselineModelConfig, BaselineTrainConfig
from model.baselines.context import Context
from model.baselines.gan import GanRunner
from model.baselines.mean_teacher import MeanTeacherRunner
from model.baselines.nets import GENERATOR_ARCHS, check_arch
from model.baselines.segmenters import PyramidRunner, SegmenterRunner
from model.baselines.serving import save_baseline
from model.config import to_dict
from model.device import resolve_device
from model.training.data import Dataset, TileSampler, split_labeled
from model.training.losses import load_perceptual
from model.training.train import Progress, TrainResult


class Runner(Protocol):
    """One baseline's networks and its optimisation step."""

    num_scales: int

    def step(self, rank: int, step: int) -> dict[str, float]: ...

    def end_scale(self, rank: int) -> None: ...

    def networks(self) -> tuple[nn.Module | None, nn.Module | None]: ...


RUNNERS: dict[str, Callable[[Context], Runner]] = {
    "pix2pix": GanRunner,
    "pix2pixhd": GanRunner,
    "fcdensenet": SegmenterRunner,
    "fcdensenet-pyramid": PyramidRunner,
    "mean-teacher": MeanTeacherRunner,
}


def train_baseline(
    model_cfg: BaselineModelConfig,
    train_cfg: BaselineTrainConfig,
    dataset: Dataset,
    out_dir: str | Path,
    *,
    name: str,
    eval_images: list[np.ndarray] | None = None,
    metadata: dict[str, Any] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress_bar: bool = False,
) -> TrainResult:
    """Train a baseline and write its run directory with a serving file ``model.pt``.

    Args:
        model_cfg: which baseline and its networks.
        train_cfg: steps, batch, learning rates, losses, labelled fraction.
        dataset: labelled pairs (and unlabelled images for ``mean-teacher``).
        out_dir: run directory (files of an earlier run there are replaced).
        name: model name stored in the serving file.
        eval_images: ``transductive``: evaluation images added to the unlabelled pool.
        metadata: extra provenance stored in the serving file.
        on_progress: called after every step with a :class:`model.training.train.Progress`.
        should_stop: polled every step; True returns ``stopped=True`` (no resume).
        progress_bar: show a tqdm bar.
    """
    out = Path(out_dir)
    _check_inputs(model_cfg, train_cfg, dataset)
    out.mkdir(parents=True, exist_ok=True)
    ctx, labeled = _context(model_cfg, train_cfg, dataset, eval_images)
    runner = RUNNERS[model_cfg.arch](ctx)
    config = {
        "name": name,
        "arch": model_cfg.arch,
        "model": to_dict(model_cfg),
        "train": to_dict(train_cfg),
        "classes": dataset.classes.to_dict(),
        "device": str(ctx.device),
        "metadata": metadata or {},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "metrics.jsonl").unlink(missing_ok=True)
    log = report.MetricsLog(out / "metrics.jsonl")
    elapsed = _loop(runner, train_cfg.steps, log, on_progress, should_stop, progress_bar)
    if elapsed is None:
        return TrainResult(out, None, stopped=True)
    report.plot_losses(log.read(), out / "losses.png")
    meta = _metadata(name, model_cfg, train_cfg, ctx, labeled, dataset, elapsed, metadata or {})
    generator, segmenter = runner.networks()
    path = save_baseline(out / "model.pt", model_cfg, dataset.classes, meta, generator, segmenter)
    return TrainResult(out, path, stopped=False)


def _check_inputs(
    model_cfg: BaselineModelConfig, cfg: BaselineTrainConfig, dataset: Dataset
) -> None:
    check_arch(model_cfg.arch)
    if model_cfg.num_classes != dataset.classes.num_classes:
        raise ValueError(
            f"model has {model_cfg.num_classes} classes but the dataset's class table "
            f"has {dataset.classes.num_classes}"
        )
    if not dataset.images:
        raise ValueError("the dataset has no labelled images")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {cfg.steps} and {cfg.batch_size}")
    factor = 2 ** (model_cfg.num_scales - 1)
    if model_cfg.arch == "fcdensenet-pyramid" and cfg.tile_size % factor:
        raise ValueError(
            f"tile_size {cfg.tile_size} must be a multiple of 2**(scales-1) = {factor}"
        )
    if model_cfg.arch in GENERATOR_ARCHS and (cfg.labeled_fraction < 1 or cfg.transductive):
        raise ValueError(f"labeled_fraction and transductive do not apply to {model_cfg.arch}")
    if cfg.transductive and model_cfg.arch != "mean-teacher":
        raise ValueError(
            f"{model_cfg.arch} uses no unlabelled images, so transductive has no effect; "
            "use it with mean-teacher (or --arch ours --mode ssl)"
        )


def _context(
    model_cfg: BaselineModelConfig,
    cfg: BaselineTrainConfig,
    dataset: Dataset,
    eval_images: list[np.ndarray] | None,
) -> tuple[Context, Dataset]:
    labeled, pool = dataset, list(dataset.unlabeled)
    if cfg.labeled_fraction < 1.0:
        labeled, pool = split_labeled(dataset, cfg.labeled_fraction, cfg.seed)
    if cfg.transductive:
        pool += list(eval_images or [])
    needs_pool = model_cfg.arch == "mean-teacher"
    if needs_pool and not pool:
        raise ValueError(
            "mean-teacher needs unlabelled images: add an unlabeled/ folder, set "
            "labeled_fraction < 1 or use transductive with evaluation images"
        )
    torch.manual_seed(cfg.seed)
    sampler = TileSampler(
        labeled.images, labeled.masks, cfg.tile_size, cfg.tile_overlap, cfg.color_jitter, cfg.seed
    )
    unlabeled = (
        TileSampler(pool, None, cfg.tile_size, cfg.tile_overlap, cfg.color_jitter, cfg.seed + 1)
        if needs_pool
        else None
    )
    perceptual = load_perceptual(cfg.perceptual_weights) if cfg.perc else None
    device = resolve_device(cfg.device)
    if perceptual is not None:
        perceptual.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    return Context(model_cfg, cfg, device, sampler, unlabeled, perceptual, gen), labeled


def _loop(
    runner: Runner,
    steps: int,
    log: report.MetricsLog,
    on_progress: Callable[[Progress], None] | None,
    should_stop: Callable[[], bool] | None,
    progress_bar: bool,
) -> float | None:
    """Run every scale's steps; the elapsed seconds, or None when stopped."""
    total, started = runner.num_scales * steps, time.perf_counter()
    bar = _bar(progress_bar, total)
    try:
        for rank in range(runner.num_scales):
            for step in range(steps):
                if should_stop is not None and should_stop():
                    return None
                losses = runner.step(rank, step)
                p = _progress(runner.num_scales, rank, step + 1, steps, losses, started)
                log.append(
                    {
                        "scale": p.scale,
                        "rank": rank,
                        "step": p.step,
                        "global_step": p.done_steps,
                        "time_s": round(p.elapsed_s, 3),
                        **{f"loss/{k}": round(v, 6) for k, v in losses.items()},
                    }
                )
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
                if on_progress is not None:
                    on_progress(p)
            runner.end_scale(rank)
    finally:
        if bar is not None:
            bar.close()
    return time.perf_counter() - started


def _progress(
    num_scales: int, rank: int, step: int, steps: int, losses: dict[str, float], started: float
) -> Progress:
    done, total = rank * steps + step, num_scales * steps
    elapsed = time.perf_counter() - started
    eta = (total - done) * elapsed / done if done else None
    return Progress(
        num_scales - 1 - rank, rank, num_scales, step, steps, done, total, losses, eta, elapsed
    )


def _bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="step", dynamic_ncols=True)


def _metadata(
    name: str,
    model_cfg: BaselineModelConfig,
    cfg: BaselineTrainConfig,
    ctx: Context,
    labeled: Dataset,
    dataset: Dataset,
    elapsed: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    generator = model_cfg.arch in GENERATOR_ARCHS
    perceptual = (
        "on: " + str(cfg.perceptual_weights)
        if ctx.perceptual is not None
        else "off"
        if not cfg.perc
        else "off: no VGG19 weights file configured"
    )
    meta = {
        "name": name,
        "arch": model_cfg.arch,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_config": to_dict(cfg),
        "steps": cfg.steps,
        "wall_time_s": round(elapsed, 1),
        "device": str(ctx.device),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "perceptual": perceptual,
        "has_segmenter": not generator,
        "has_generator": generator,
        "stochastic": False,
        "dataset": {
            "root": dataset.root,
            "names": list(labeled.names),
            "classes": dataset.classes.name,
        },
    }
    meta.update(extra)
    return meta
