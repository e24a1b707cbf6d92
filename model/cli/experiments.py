"""``histosynth experiment``: the subcommand of :func:`model.experiments.runs.run_experiment`."""

from __future__ import annotations

import argparse
from typing import Any

from model.arguments import csv_list
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
        "images, write OUT/<name>.md and OUT/<name>.json.",
    )
    p.add_argument("name", choices=EXPERIMENTS)
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
    p.add_argument("--seeds", type=int, help="ssl: runs per labelled fraction")
    p.add_argument("--inception", help="local TorchScript Inception-v3 for FID/KID")
    p.add_argument("--classes", help="class table JSON (default: DATA/classes.json)")
    p.add_argument("--layout", choices=["folder", "glas"], default="folder")
    p.add_argument("--device", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--perceptual-weights", help="local VGG19 weights for ours and pix2pixHD")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_experiment)


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run :func:`run_experiment` from parsed arguments and print its tables."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
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
