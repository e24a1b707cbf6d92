"""Benchmarks: generation speed (generate) and generators side by side (archs).

``register`` adds ``histosynth bench generate``; the service adds ``bench serve`` to the group.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from model.arguments import csv_ints, csv_list
from model.bench.archs import cmd_bench_archs
from model.bench.generate import cmd_bench_generate
from model.device import resolve_device
from model.nets.fuse import TILE


def cmd_bench(args: argparse.Namespace) -> int:
    """Ours on the CPU: :func:`cmd_bench_generate`; baselines or a GPU: :func:`cmd_bench_archs`."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if getattr(args, "arch", ["ours"]) != ["ours"] or device.type == "cuda":
        return cmd_bench_archs(args, device)
    return cmd_bench_generate(args, device)


def register(sub: Any) -> None:
    """Add the ``bench`` group and ``bench generate``."""
    p = sub.add_parser("bench", help="benchmarks (generate; the service adds serve)")
    bsub = p.add_subparsers(dest="bench", metavar="WHAT", required=True)
    p.subcommands = bsub  # the service registers `bench serve` here
    g = bsub.add_parser("generate", help="generation speed, memory and conv efficiency")
    g.add_argument("--size", type=csv_ints, default=[256, 512, 1024], help="square mask sides, e.g. 256,512,1024")
    g.add_argument("--batch", type=csv_ints, default=[1], help="variants per call, e.g. 1,4")
    g.add_argument("--device", default="auto")
    g.add_argument("--preset", default="base", help="preset for a random-weight model (default base)")
    g.add_argument("--classes", type=int, default=4, help="classes of the random-weight model")
    g.add_argument("--model", help="benchmark this serving file or bundled model instead")
    g.add_argument("--repeat", type=int, default=3)
    g.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    g.add_argument("--tile", type=int,
                   help=f"ours: tile side of the generator's conv stacks, 0 = untiled (default: "
                        f"{TILE} on a CPU, untiled on CUDA)")
    g.add_argument("--json", default="bench-generate.json", help="where to write the results")
    g.add_argument("--arch", type=csv_list, default=["ours"],
                   help="generators side by side, e.g. ours,pix2pix,pix2pixhd (ratios to ours)")
    g.add_argument("--baseline-preset", default="paper",
                   help="baseline networks of random-weight baselines: tiny | small | paper (default)")
    g.set_defaults(func=cmd_bench)
