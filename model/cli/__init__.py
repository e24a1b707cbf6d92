"""``histosynth`` command line: train, generate, segment, evaluate, bench.

Other packages add subcommands through ``register(subparsers)`` (the installed entry
point is ``service.cli:main``). Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from model.arguments import csv_ints, csv_list, resolve_model, setting, split_settings
from model.config import PRESETS
from model.device import PRECISIONS
from model.errors import run

__all__ = ["build_configs", "build_parser", "main", "run"]  # run: service.cli dispatches through it


# ---- train -------------------------------------------------------------------------------
def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model on a dataset folder",
                       description="Train the generator/segmenter pyramid coarse to fine (Algorithms 1-3).")
    p.add_argument("--data", required=True, help="dataset folder: images/, masks/, classes.json [, unlabeled/]")
    p.add_argument("--classes", help="class table JSON (default: DATA/classes.json)")
    p.add_argument("--layout", choices=["folder", "glas"], default="folder")
    from model.baselines.config import ARCHS

    p.add_argument("--arch", default="ours", choices=ARCHS,
                   help="ours (default) or a baseline of the paper's comparisons")
    p.add_argument("--preset", default="tiny",
                   help=f"{' | '.join(PRESETS)} (default: tiny); baselines: tiny | small | paper")
    p.add_argument("--mode", choices=["generate", "joint", "ssl"], help="default: the preset's (joint)")
    p.add_argument("--scales", type=int, help="number of scales N+1")
    p.add_argument("--steps", type=int, help="optimisation steps per scale")
    p.add_argument("--tile-size", type=int)
    p.add_argument("--crop", type=int, help="crop side for scales finer than it")
    p.add_argument("--batch-sizes", type=csv_ints, help="per scale, coarse to fine, e.g. 8,6,4,4,3")
    p.add_argument("--exclude", type=csv_list, default=[], help="image stems to hold out, e.g. test10,test106")
    p.add_argument("--labeled-fraction", type=float, help="ssl: share of labelled tiles kept labelled")
    p.add_argument("--transductive", action="store_true", help="ssl: add held-out images to the unlabelled pool")
    p.add_argument("--perceptual-weights", help="local VGG19 weights (torchvision vgg19 state dict)")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="forward passes: auto (bfloat16 on CUDA, float32 on a CPU; the default), float32, "
                        "or bfloat16 (on a CPU: faster with AVX512-BF16 or AMX, slower without)")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", type=setting, action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. model.generator.base_width=16 or train.lr_g=2e-4")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--name", help="model name (default: the class table's name)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init-from", metavar="FILE",
                   help="a partly trained serving file (e.g. RUN/scales/scale2.pt) of the same preset: "
                        "its trained scales are reused and training starts at the next one")
    p.add_argument("--init-scales", type=int, metavar="K",
                   help="with --init-from: reuse only its K coarsest scales (default: all it trained)")
    p.add_argument("--half", action="store_true", help="also write model-fp16.pt with float16 weights")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this machine (default 1): one per GPU with NCCL, "
                   "gloo on the CPU; each draws its own crops, rank 0 writes")
    p.set_defaults(func=cmd_train)


def build_configs(args: argparse.Namespace, num_classes: int) -> tuple[Any, Any]:
    """Preset plus command-line overrides -> (ModelConfig, TrainConfig)."""
    from model.config import preset, replace

    pre = preset(args.preset)
    model_changes: dict[str, Any] = {"num_classes": num_classes}
    train_changes: dict[str, Any] = {}
    for flag, key in (("mode", "mode"), ("steps", "steps_per_scale"), ("tile_size", "tile_size"),
                      ("crop", "crop_size"), ("labeled_fraction", "labeled_fraction"), ("device", "device"),
                      ("precision", "precision"), ("seed", "seed"), ("perceptual_weights", "perceptual_weights")):
        if getattr(args, flag, None) is not None:
            train_changes[key] = getattr(args, flag)
    if args.batch_sizes:
        train_changes["batch_sizes"] = tuple(args.batch_sizes)
    if args.transductive:
        train_changes["transductive"] = True
    if args.scales is not None:
        model_changes["num_scales"] = args.scales
    set_model, set_train = split_settings(args.set)
    model_changes.update(set_model)
    train_changes.update(set_train)
    try:
        return replace(pre.model, **model_changes), replace(pre.train, **train_changes)
    except TypeError as exc:
        raise ValueError(f"bad config override: {exc}") from None


def cmd_train(args: argparse.Namespace) -> int:
    if getattr(args, "arch", "ours") != "ours":
        from model.cli.baselines import cmd_train_baseline

        return cmd_train_baseline(args)
    from model.checkpoint import load_model, save_model
    from model.training.data import load_dataset
    from model.training.train import train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data, args.classes, layout=args.layout, exclude=args.exclude)
    model_cfg, train_cfg = build_configs(args, dataset.classes.num_classes)
    name = args.name or dataset.classes.name
    held_out = list(args.exclude)
    metadata = {"command": "histosynth " + " ".join(sys.argv[1:]), "preset": args.preset,
                "held_out": held_out}
    eval_images = None
    if train_cfg.transductive:  # the held-out images join the unlabelled pool (masks unused)
        if not held_out:
            raise ValueError("--transductive needs held-out images: name them with --exclude")
        eval_images = load_dataset(args.data, args.classes, layout=args.layout, include=held_out).images
    if args.init_scales is not None and not args.init_from:
        raise ValueError("--init-scales needs --init-from")
    result = train(model_cfg, train_cfg, dataset, args.out, name=name, resume=args.resume,
                   init_from=args.init_from, init_scales=args.init_scales, eval_images=eval_images,
                   metadata=metadata, progress_bar=True, nproc=args.nproc)
    if result.model_path is None:
        print(f"stopped; resume with --resume --out {args.out}")
        return 0
    if args.half:
        m = load_model(result.model_path)
        half = save_model(Path(args.out) / "model-fp16.pt", m.generator, m.segmenter, m.config,
                          m.classes, m.metadata, half=True)
        print(f"half-precision serving file: {half}")
    print(f"model: {result.model_path}\nrun directory: {result.run_dir}")
    return 0


# ---- generate / segment ------------------------------------------------------------------
def _add_generate(sub: Any) -> None:
    p = sub.add_parser("generate", help="generate images from a mask")
    p.add_argument("--model", required=True, help="serving file or bundled model name")
    p.add_argument("--mask", required=True, help="mask image (PNG, TIFF, BMP): raw values or palette colours")
    p.add_argument("-n", type=int, default=1, help="number of variants")
    p.add_argument("--seed", type=int, help="variant i uses seed + i (default: random, printed)")
    p.add_argument("--noise", type=float, default=1.0, help="0 = deterministic, 1 = trained amplitude")
    p.add_argument("--encoding", choices=["auto", "values", "index", "color"], default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=".", help="output folder")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from PIL import Image

    from model.pipeline import load_pipeline
    from model.training.data import read_mask

    pipe = load_pipeline(resolve_model(args.model), args.device)
    mask = read_mask(args.mask)
    t0 = time.perf_counter()
    result = pipe.generate(mask, n=args.n, seed=args.seed, noise=args.noise, encoding=args.encoding)
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.mask).stem
    for image, seed in zip(result.images, result.seeds, strict=True):
        path = out / f"{stem}_{pipe.name}_seed{seed}.png"
        Image.fromarray(image).save(path)
        print(path)
    print(f"{len(result.images)} image(s) {result.images[0].shape[1]}x{result.images[0].shape[0]} "
          f"in {elapsed:.2f} s (model {pipe.name}, seed {result.seed})", file=sys.stderr)
    return 0


def _add_segment(sub: Any) -> None:
    p = sub.add_parser("segment", help="segment an H&E image with the model's segmenter")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--format", choices=["color", "values", "index"], default="color")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=cmd_segment)


def cmd_segment(args: argparse.Namespace) -> int:
    from PIL import Image

    from model.pipeline import load_pipeline
    from model.training.data import read_image

    pipe = load_pipeline(resolve_model(args.model), args.device)
    labels = pipe.segment(read_image(args.image))
    if args.format == "color":
        out = pipe.classes.to_color(labels)
    elif args.format == "values":
        out = pipe.classes.to_values(labels)
    else:
        out = labels.astype("uint8")
    Image.fromarray(out).save(args.out)
    print(args.out)
    return 0


# ---- parser and main ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The parser with model's subcommands; ``parser.subcommands`` takes more."""
    parser = argparse.ArgumentParser(prog="histosynth", description="Synthetic H&E histology from semantic masks.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.subcommands = sub  # type: ignore[attr-defined]
    _add_train(sub)
    _add_generate(sub)
    _add_segment(sub)
    for register in _optional_registrations():
        register(sub)
    return parser


def _optional_registrations() -> list[Callable[[Any], None]]:
    from model import bench, package
    from model.cli import evaluate, experiments
    from model.evaluation import figures

    return [evaluate.register, bench.register, experiments.register, figures.register, package.register]


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
