"""``histosynth train --arch <baseline>``: the baseline branch of ``model.cli.cmd_train``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from model.arguments import split_settings
from model.baselines.config import BaselineModelConfig, BaselineTrainConfig, baseline_preset
from model.baselines.serving import load_baseline, save_baseline
from model.config import replace

#: ``histosynth train`` options that only our pyramid understands.
OURS_ONLY = {"mode": "--mode", "crop": "--crop", "resume": "--resume"}


def build_baseline_configs(
    args: argparse.Namespace, num_classes: int
) -> tuple[BaselineModelConfig, BaselineTrainConfig]:
    """Baseline preset (tiny | small | paper) plus command-line overrides.

    Args:
        args: parsed ``histosynth train`` arguments (``--arch`` a baseline).
        num_classes: K of the dataset's class table.
    """
    for flag, option in OURS_ONLY.items():
        if getattr(args, flag, None):
            raise ValueError(f"{option} applies to --arch ours only")
    pre = baseline_preset(args.arch, args.preset)
    model_changes: dict[str, Any] = {"num_classes": num_classes}
    if args.scales is not None:
        model_changes["num_scales"] = args.scales
    train_changes: dict[str, Any] = {}
    for flag, key in (
        ("steps", "steps"),
        ("tile_size", "tile_size"),
        ("device", "device"),
        ("labeled_fraction", "labeled_fraction"),
        ("seed", "seed"),
        ("perceptual_weights", "perceptual_weights"),
    ):
        if getattr(args, flag, None) is not None:
            train_changes[key] = getattr(args, flag)
    if args.batch_sizes:
        train_changes["batch_size"] = args.batch_sizes[0]
    if args.transductive:
        train_changes["transductive"] = True
    set_model, set_train = split_settings(args.set)
    model_changes.update(set_model)
    train_changes.update(set_train)
    try:
        return replace(pre.model, **model_changes), replace(pre.train, **train_changes)
    except TypeError as exc:
        raise ValueError(f"bad config override: {exc}") from None


def cmd_train_baseline(args: argparse.Namespace) -> int:
    """Train the baseline named by ``--arch`` on ``--data`` into ``--out``."""
    from model.baselines.train import train_baseline
    from model.training.data import load_dataset

    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data, args.classes, layout=args.layout, exclude=args.exclude)
    model_cfg, train_cfg = build_baseline_configs(args, dataset.classes.num_classes)
    eval_images = None
    if train_cfg.transductive and args.exclude:
        held = load_dataset(args.data, args.classes, layout=args.layout, include=args.exclude)
        eval_images = held.images
    name = args.name or f"{dataset.classes.name}-{args.arch}"
    metadata = {
        "command": "histosynth " + " ".join(sys.argv[1:]),
        "preset": args.preset,
        "held_out": list(args.exclude),
    }
    result = train_baseline(
        model_cfg,
        train_cfg,
        dataset,
        args.out,
        name=name,
        eval_images=eval_images,
        metadata=metadata,
        progress_bar=True,
    )
    if result.model_path is None:
        print("stopped (baselines do not resume)")
        return 0
    if args.half:
        m = load_baseline(result.model_path)
        half = save_baseline(
            Path(args.out) / "model-fp16.pt",
            m.config,
            m.classes,
            m.metadata,
            m.generator,
            m.segmenter,
            half=True,
        )
        print(f"half-precision serving file: {half}")
    print(f"model: {result.model_path}\nrun directory: {result.run_dir}")
    return 0
