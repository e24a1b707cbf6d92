"""``histosynth experiment``: the subcommand of :func:`model.experiments.runs.run_experiment`."""

from __future__ import annotations

import argparse
from typing import Any

from model.arguments import csv_ints, csv_list, resolve_model
from model.experiments import run_experiment, tables
from model.experiments.config import EXPERIMENT_BUDGETS
from model.experiments.setup import EXPERIMENTS


def register(subparsers: Any) -> None:
    """Add the ``experiment`` subcommand.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers`` returned.
    """
    p = subparsers.add_parser(
        "experiment",
        help="run one of the paper's comparisons end to end",
        description="Train every compared method, evaluate on held-out "
        "images, write OUT/<name>.md and OUT/<name>.json. augmentation: train the "
        "m-FC-DenseNet with and without a generator's synthetic pairs (--model). curve: the "
        "learning curve of a run trained with --set train.snapshot_every=K (--run): realism "
        "measures of each finest-scale snapshot against steps.",
    )
    p.add_argument("name", choices=(*EXPERIMENTS, "augmentation", "curve"))
    p.add_argument("--data", required=True, help="dataset folder: images/, masks/, classes.json")
    p.add_argument("--out", required=True, help="output folder (runs and results)")
    p.add_argument(
        "--budget",
        choices=list(EXPERIMENT_BUDGETS),
        default="small",
        help="toy (seconds), small (about an hour on a 2-core CPU), paper (GPU)",
    )
    p.add_argument(
        "--holdout",
        type=csv_list,
        help="held-out image stems (default: the last 2 names, sorted)",
    )
    p.add_argument("--seeds", type=int, help="ssl: runs per labelled fraction; augmentation: runs per row")
    p.add_argument("--inception", help="local TorchScript Inception-v3 for FID/KID")
    p.add_argument("--classes", help="class table JSON (default: DATA/classes.json; augmentation: the generator's)")
    p.add_argument("--layout", choices=["folder", "glas"], default="folder")
    p.add_argument("--device", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--perceptual-weights", help="local VGG19 weights for ours and pix2pixHD")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    _add_augmentation_options(p)
    _add_curve_options(p)
    p.set_defaults(func=cmd_experiment)


def _relabel(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"--relabel takes FROM=TO, got {text!r}")
    return old.strip(), new.strip()


def _add_augmentation_options(p: argparse.ArgumentParser) -> None:
    from model.augmentation import TRANSFORMS
    from model.experiments.augmentation import MIXINGS
    from model.experiments.config import AUGMENTATION_BUDGETS

    g = p.add_argument_group("augmentation", "options of `experiment augmentation` "
                             f"(budgets: {', '.join(AUGMENTATION_BUDGETS)})")
    g.add_argument("--model", help="the generator: a serving file or a bundled model's name (required)")
    g.add_argument("--synthetic-per-mask", type=csv_ints, metavar="N,N",
                   help="synthetic pairs per training mask, 0 = real pairs only (default: the budget's)")
    g.add_argument("--mixings", type=csv_list,
                   help=f"for every non-zero amount, from {', '.join(MIXINGS)} (default: all)")
    g.add_argument("--transforms", choices=list(TRANSFORMS), default="none",
                   help="geometric copies of each mask, as for `histosynth augment`")
    g.add_argument("--noise", type=float, default=1.0, help="generator noise scale (default 1)")
    g.add_argument("--relabel", type=_relabel, action="append", metavar="FROM=TO",
                   help="replace a class by another before generating (repeatable)")


def _add_curve_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("curve", "options of `experiment curve` (--holdout is required; "
                             "the defaults are those of `histosynth evaluate`)")
    g.add_argument("--run", help="run directory with snapshots/scale0-step<k>.pt (required)")
    g.add_argument("--variants", type=int, default=8, help="generated images per held-out mask")
    g.add_argument("--crop", type=int, default=1024, help="centre-crop side; 0 = whole tiles")
    g.add_argument("--two-sample-steps", type=int, default=600, help="two-sample classifier steps")
    g.add_argument("--two-sample-repeats", type=int, default=3, help="two-sample classifiers; the median counts")


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run :func:`run_experiment` from parsed arguments and print its tables."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.name == "augmentation":
        return _cmd_augmentation(args)
    if args.name == "curve":
        return _cmd_curve(args)
    result = run_experiment(
        args.name,
        args.data,
        args.out,
        budget=args.budget,
        holdout=args.holdout,
        seeds=args.seeds,
        inception=args.inception,
        classes=args.classes,
        layout=args.layout,
        device=args.device,
        perceptual_weights=args.perceptual_weights,
    )
    print(tables.markdown(result))
    return 0


def _cmd_augmentation(args: argparse.Namespace) -> int:
    from model.experiments import augmentation_report
    from model.experiments.augmentation import run_augmentation

    if not args.model:
        raise ValueError("experiment augmentation needs --model, the generator's serving file")
    result = run_augmentation(
        args.data, resolve_model(args.model), args.out, budget=args.budget, holdout=args.holdout,
        seeds=args.seeds, per_mask=None if args.synthetic_per_mask is None else tuple(args.synthetic_per_mask),
        mixings=None if args.mixings is None else tuple(args.mixings), transforms=args.transforms,
        noise=args.noise, relabel=dict(args.relabel or []), classes=args.classes, device=args.device,
    )
    print("\n".join(augmentation_report.section(result)))
    return 0


def _cmd_curve(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from model.config import TwoSampleConfig
    from model.evaluation.curve import learning_curve, markdown, snapshots
    from model.evaluation.evaluate import split_names
    from model.pipeline import load_pipeline
    from model.training.data import load_dataset

    if not args.run:
        raise ValueError("experiment curve needs --run, a run directory trained with --set train.snapshot_every=K")
    if not args.holdout:
        raise ValueError("experiment curve needs --holdout, the tiles the run never trained on")
    if min(args.variants, args.two_sample_steps, args.two_sample_repeats) < 1 or args.crop < 0:
        raise ValueError("--variants, --two-sample-steps and --two-sample-repeats must be at least 1, --crop at least 0")
    first = snapshots(args.run)[0][1]  # errors before any data is read
    dataset = load_dataset(args.data, args.classes or load_pipeline(first, "cpu").classes, layout=args.layout)
    split_names(dataset, args.holdout, None)
    curve = learning_curve(args.run, dataset, args.holdout, variants=args.variants, crop=args.crop or None,
                           device=args.device or "auto", two_sample=TwoSampleConfig(steps=args.two_sample_steps, repeats=args.two_sample_repeats),
                           on_row=lambda r: print(f"step {r['step']}: two-sample {r['two_sample']:.2f}", flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.json").write_text(json.dumps(curve, indent=2))
    (out / "curve.md").write_text(markdown(curve) + "\n")
    print(markdown(curve))
    print(f"results: {out / 'curve.md'}, {out / 'curve.json'}")
    return 0
