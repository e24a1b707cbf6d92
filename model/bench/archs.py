"""``histosynth bench generate --arch ours,pix2pix,pix2pixhd``: generators side by side.

Every generator runs on the same machine, sizes and batches in one process; rows carry the
ratio of their time per image to ours (above 1: slower than ours). On CUDA a second set of
rows runs under bf16 autocast with channels-last weights and inputs at batch 1, 8 and 32
(the GPU column). pix2pix and pix2pixHD take no noise: their n variants are one forward
pass and identical images, so per-image times at batch > 1 are not like for like.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.arguments import resolve_model
from model.baselines.config import baseline_preset
from model.baselines.nets import build_generator, build_segmenter
from model.baselines.serving import save_baseline
from model.bench.generate import bench_classes, bench_generate, random_model
from model.classes import ClassTable
from model.config import replace
from model.nets.fuse import set_tile
from model.report import Column, markdown_table

GENERATOR_ARCHS = ("ours", "pix2pix", "pix2pixhd")
GPU_BATCHES = (1, 8, 32)


def bench_model(arch: str, args: argparse.Namespace, folder: Path) -> Path:
    """The serving file to time for ``arch``: --model or random weights (ours), random baselines.

    Args:
        arch: ours, pix2pix or pix2pixhd.
        args: parsed ``bench generate`` arguments (model, preset, baseline_preset, classes).
        folder: where random-weight files are written.
    """
    if arch not in GENERATOR_ARCHS:
        raise ValueError(f"{arch!r} cannot generate; bench one of {', '.join(GENERATOR_ARCHS)}")
    if arch == "ours":
        if args.model:
            return resolve_model(args.model)
        return random_model(args.preset, args.classes, folder)
    return random_baseline_model(arch, args.baseline_preset, bench_classes(args.classes), folder)


def gpu_rows(
    pipe: Any, sizes: list[int], repeat: int, peaks: dict[int, float]
) -> list[dict[str, Any]]:
    """bf16 autocast rows at batch 1, 8, 32 (CUDA only; weights are channels-last already)."""
    with torch.autocast("cuda", dtype=torch.bfloat16):
        rows = bench_generate(pipe, sizes, list(GPU_BATCHES), repeat, peaks)
    return [{**r, "precision": "bf16"} for r in rows]


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``ratio_to_ours`` = s/image over ours' s/image at the same size, batch and precision."""
    ours = {
        (r["size"], r["batch"], r["precision"]): r["s_per_image"]
        for r in rows
        if r["arch"] == "ours"
    }
    for r in rows:
        ref = ours.get((r["size"], r["batch"], r["precision"]))
        r["ratio_to_ours"] = r["s_per_image"] / ref if ref else None


def format_arch_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of every arch, size, batch and precision with the ratio to ours."""
    return markdown_table(_ARCH_COLUMNS, rows)


_ARCH_COLUMNS: list[Column] = [
    ("arch", "l", lambda r: f"{r['arch']}"),
    ("precision", "l", lambda r: f"{r['precision']}"),
    ("size", "r", lambda r: f"{r['size']}"),
    ("batch", "r", lambda r: f"{r['batch']}"),
    ("s/image", "r", lambda r: f"{r['s_per_image']:.3f}"),
    ("images/s", "r", lambda r: f"{r['images_per_s']:.2f}"),
    ("x ours", "r", lambda r: "-" if r["ratio_to_ours"] is None else f"{r['ratio_to_ours']:.2f}"),
    ("peak MiB", "r", lambda r: f"{r['peak_mem_mib']:.0f}"),
    ("GFLOP/image", "r", lambda r: f"{r['gflop_per_image']:.1f}"),
    ("of conv", "r", lambda r: f"{(r['efficiency'] or 0) * 100:.0f}%"),
    ("distinct variants", "l", lambda r: "yes" if r["arch"] == "ours" else "no (1 pass)"),
]


def cmd_bench_archs(args: argparse.Namespace, device: torch.device) -> int:
    """Time every ``--arch`` generator, print the side-by-side table, write JSON."""
    from model.pipeline import load_pipeline

    if args.model and args.arch != ["ours"]:
        raise ValueError("--model benchmarks one serving file; use it without --arch")
    unknown = [a for a in args.arch if a not in GENERATOR_ARCHS]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)} cannot generate; bench {', '.join(GENERATOR_ARCHS)}"
        )
    rows: list[dict[str, Any]] = []
    peaks: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            pipe = load_pipeline(bench_model(arch, args, Path(tmp)), str(device))
            if arch == "ours" and args.tile is not None:
                set_tile(pipe.generator, args.tile)
            arch_rows = [
                {**r, "precision": "fp32"}
                for r in bench_generate(pipe, args.size, args.batch, args.repeat, peaks)
            ]
            if device.type == "cuda":
                arch_rows += gpu_rows(pipe, args.size, args.repeat, peaks)
            rows += [{"arch": arch, **r} for r in arch_rows]
    add_ratios(rows)
    print(format_arch_table(rows))
    result = {
        "archs": args.arch,
        "ours": args.model or f"random weights, preset {args.preset}",
        "baselines": f"random weights, preset {args.baseline_preset}",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


def random_baseline_model(arch: str, preset_name: str, classes: ClassTable, folder: Path) -> Path:
    """A baseline serving file with freshly initialised weights (for speed benchmarks).

    Args:
        arch: a baseline name.
        preset_name: its ``BASELINE_PRESETS`` budget (``paper`` = the published networks).
        classes: the class table (K = its size).
        folder: where ``<arch>.pt`` is written.
    """
    cfg = replace(baseline_preset(arch, preset_name).model, num_classes=classes.num_classes)
    torch.manual_seed(0)
    generator, segmenter = build_generator(cfg), build_segmenter(cfg)
    meta = {"name": f"random-{arch}", "has_segmenter": segmenter is not None}
    return save_baseline(folder / f"{arch}.pt", cfg, classes, meta, generator, segmenter)
