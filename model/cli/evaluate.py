"""``histosynth evaluate``: the command of :func:`model.evaluation.evaluate.evaluate`.

It lives in the command layer because the independent judge trains with the baselines'
trainer (:mod:`model.baselines.judge`), a layer above evaluation.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from model.arguments import csv_list, resolve_model
from model.baselines.config import JudgeConfig
from model.baselines.judge import Judge, load_judge
from model.checkpoint import file_sha256, weights_sha256
from model.config import TwoSampleConfig, replace
from model.evaluation import metrics as M
from model.evaluation.evaluate import evaluate, format_table, split_names
from model.pipeline import Pipeline, load_pipeline
from model.training.data import Dataset, load_dataset


def _mapping(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        a, sep, b = item.partition("=")
        if not sep or not a or not b:
            raise argparse.ArgumentTypeError(f"--relabel takes from=to[,from=to], got {text!r}")
        out[a.strip()] = b.strip()
    return out


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` subcommand.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers`` returned.
    """
    p = subparsers.add_parser("evaluate", help="evaluate a model on held-out tiles",
                              description="Mask consistency, realism (SWD), diversity (MS-SSIM), "
                                          "segmentation, FID/KID, a classifier two-sample test, "
                                          "nuclei statistics and an independent judge segmenter "
                                          "on held-out tiles, each beside its real-vs-real floor.")
    p.add_argument("--model", required=True, help="serving file or bundled model name")
    p.add_argument("--data", required=True, help="dataset folder: images/, masks/")
    p.add_argument("--classes", help="class table JSON (default: the model's class table)")
    p.add_argument("--layout", choices=["folder", "glas"], default="folder")
    p.add_argument("--holdout", type=csv_list, required=True, help="held-out image stems, e.g. test10,test106")
    p.add_argument("--variants", type=int, default=8, help="generated images per held-out mask")
    p.add_argument("--crop", type=int, default=1024, help="centre-crop side; 0 = whole tiles")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--segmenter", help="model whose segmenter judges mask consistency (default: --model)")
    p.add_argument("--relabel", type=_mapping, help="class renaming, e.g. low_grade=high_grade")
    p.add_argument("--inception", help="local TorchScript Inception-v3 file for FID/KID "
                                       "(default: random-conv features, reported as randconv-v1)")
    p.add_argument("--judge", choices=["train", "none"], default="train",
                   help="independent judge: train (or reuse from --judge-cache) a reference "
                        "segmenter on the real training tiles; none skips it")
    p.add_argument("--judge-cache", default="runs/judges", help="folder of cached judges")
    p.add_argument("--judge-steps", type=int, help=f"judge training steps (default {JudgeConfig().steps})")
    p.add_argument("--two-sample-steps", type=int,
                   help=f"two-sample classifier steps (default {TwoSampleConfig().steps}; 0 skips it)")
    p.add_argument("--two-sample-repeats", type=int, default=TwoSampleConfig().repeats,
                   help="two-sample classifiers (seeds seed, seed+1, ...); their median is reported "
                        f"(default {TwoSampleConfig().repeats})")
    p.add_argument("--two-sample-blur", type=_sigmas, default=(), metavar="S1,S2,...",
                   help="also run the two-sample test (and its floor) after Gaussian blurs of these "
                        "sigmas in pixels, e.g. 2,4,8: the spatial scale at which generated and "
                        "real images still differ (default: none)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--out", help="write the full report as JSON here")
    p.set_defaults(func=cmd_evaluate)


def _load_pipeline(name_or_path: str, device: str) -> Pipeline:
    return load_pipeline(resolve_model(name_or_path), device)


def _load_dataset(root: str, classes: Any, layout: str) -> Dataset:
    return load_dataset(root, classes, layout=layout)  # type: ignore[arg-type]


def _load_judge(args: argparse.Namespace, dataset: Dataset) -> Judge | None:
    """The independent judge trained on the dataset's non-held-out tiles (cached), or None."""
    if args.judge == "none":
        return None
    cfg = JudgeConfig() if args.judge_steps is None else replace(JudgeConfig(), steps=args.judge_steps)
    idx = [i for i, n in enumerate(dataset.names) if n not in args.holdout]
    train = Dataset(dataset.classes, [dataset.names[i] for i in idx],
                    [dataset.images[i] for i in idx], [dataset.masks[i] for i in idx], [], dataset.root)
    return load_judge(train, args.holdout, args.judge_cache, cfg, args.device, log=print)


def _sigmas(text: str) -> tuple[float, ...]:
    try:
        sigmas = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not sigmas or any(not (math.isfinite(s) and s > 0) for s in sigmas):
        raise argparse.ArgumentTypeError(f"blur sigmas must be positive finite numbers, got {text!r}")
    return sigmas


def _two_sample_config(steps: int | None, repeats: int, blur: tuple[float, ...] = ()
                       ) -> TwoSampleConfig | None:
    if steps is not None and steps < 0:
        raise ValueError(f"--two-sample-steps must be >= 0, got {steps}")
    if repeats < 1:
        raise ValueError(f"--two-sample-repeats must be at least 1, got {repeats}")
    if steps == 0:
        if blur:
            raise ValueError("--two-sample-blur needs the two-sample test (--two-sample-steps > 0)")
        return None
    base = TwoSampleConfig(repeats=repeats, blur_sigmas=blur)
    return base if steps is None else replace(base, steps=steps)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run :func:`evaluate` from parsed arguments; print a table, optionally write JSON."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # before any torch work
    path = _model_path(args.model)
    pipe = _load_pipeline(args.model, args.device)
    segmenter = _load_pipeline(args.segmenter, args.device) if args.segmenter else None
    dataset = _load_dataset(args.data, args.classes or pipe.classes, args.layout)
    split_names(dataset, args.holdout, None)  # unknown names fail before any training
    report = evaluate(pipe, dataset, holdout=args.holdout, variants=args.variants,
                      crop=args.crop or None, seed=args.seed, segmenter=segmenter,
                      relabel=args.relabel, extractor=M.make_extractor(args.inception),
                      judge=_load_judge(args, dataset),
                      two_sample=_two_sample_config(args.two_sample_steps, args.two_sample_repeats,
                                                     args.two_sample_blur))
    report["model"]["file"] = str(path) if path else args.model
    if path is not None:
        if file_sha256(path) != report["model"]["sha256"]:
            raise ValueError(f"{path} changed while it was evaluated; evaluate it again")
        report["model"]["weights_sha256"] = weights_sha256(path)  # kept by `package`
    print(format_table(report))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"report: {out}")
    return 0


def _model_path(name_or_path: str) -> Path | None:
    try:
        return resolve_model(name_or_path)
    except FileNotFoundError:
        return None  # _load_pipeline names the problem
