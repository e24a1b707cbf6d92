"""``histosynth bench segment``: segmentation speed, memory and conv efficiency.

Each size reports time per image, peak memory above the loaded model and the achieved
GFLOP/s of the segmenter's convolutions against the machine's measured conv throughput
(as ``bench generate``). FLOPs are counted with hooks on the untiled network at up to
512 x 512 and scaled by the pixel count (the halo work of the tiles is not counted as
useful work).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import allocator
from model.arguments import csv_ints, resolve_model
from model.bench.generate import PeakRSS, _timed, conv_flops, measure_conv_throughput, random_model
from model.device import resolve_device
from model.nets.segmenter import PIECE, SEGMENT_TILE, prepare_for_inference
from model.report import Column, markdown_table

#: Side at which conv FLOPs are counted (untiled, so its memory stays small).
COUNT_SIDE = 512


def bench_segment(pipe: Any, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    """Time ``pipe.segment`` on random RGB images of every size (square sides)."""
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        flops = _segment_flops(pipe, image[:COUNT_SIDE, :COUNT_SIDE]) * (size / min(size, COUNT_SIDE)) ** 2
        peak = measure_conv_throughput(pipe.device, min(size, 1024))
        pipe.segment(image)  # warm-up
        cuda = pipe.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as mem:
            t = min(_timed(lambda image=image: pipe.segment(image), pipe.device) for _ in range(repeat))
        rows.append({
            "size": size, "s_per_image": t, "mpx_per_s": size * size / t / 1e6,
            "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else mem.mib,
            "memory": "cuda max allocated" if cuda else "process RSS above baseline",
            "gflop_per_image": flops / 1e9, "achieved_gflops": flops / t / 1e9, "conv_gflops": peak,
            "efficiency": flops / t / 1e9 / peak if peak else None,
        })
    return rows


def _segment_flops(pipe: Any, image: np.ndarray) -> int:
    """Conv FLOPs of one untiled ``pipe.segment(image)``; the pipe's tiling comes back after."""
    tile, pieces = pipe.segment_tile, [s.net.piece for s in pipe.segmenter.scales]
    pipe.segment_tile = None
    prepare_for_inference(pipe.segmenter, None)
    try:
        return conv_flops(pipe.segmenter, lambda: pipe.segment(image))
    finally:
        pipe.segment_tile = tile
        for scale, piece in zip(pipe.segmenter.scales, pieces, strict=True):
            scale.net.piece = piece


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table (also readable in a terminal)."""
    return markdown_table(_COLUMNS, rows)


_COLUMNS: list[Column] = [
    ("size", "r", lambda r: f"{r['size']}"),
    ("s/image", "r", lambda r: f"{r['s_per_image']:.2f}"),
    ("Mpx/s", "r", lambda r: f"{r['mpx_per_s']:.2f}"),
    ("peak MiB", "r", lambda r: f"{r['peak_mem_mib']:.0f}"),
    ("GFLOP/image", "r", lambda r: f"{r['gflop_per_image']:.0f}"),
    ("GFLOP/s", "r", lambda r: f"{r['achieved_gflops']:.1f}"),
    ("conv GFLOP/s", "r", lambda r: f"{r['conv_gflops']:.1f}"),
    ("of conv", "r", lambda r: f"{r['efficiency'] * 100:.0f}%"),
]


def cmd_bench_segment(args: argparse.Namespace) -> int:
    """Time our segmenter, print the table, write JSON."""
    from model.pipeline import PyramidPipeline, load_pipeline

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = resolve_model(args.model) if args.model else random_model(args.preset, args.classes, Path(tmp))
        pipe = load_pipeline(path, str(device))
    if not isinstance(pipe, PyramidPipeline) or not pipe.metadata.get("has_segmenter", True):
        raise SystemExit(f"error: model {pipe.name!r} has no HistoSynth segmenter to benchmark")
    if args.tile is not None:
        pipe.segment_tile = args.tile or None
    if args.piece is not None:
        prepare_for_inference(pipe.segmenter, args.piece or None)
    rows = bench_segment(pipe, args.size, args.repeat)
    print(format_table(rows))
    print(allocator.describe())
    result = {
        "model": args.model or f"random weights, preset {args.preset}", "device": str(device),
        "threads": torch.get_num_threads(), "tile": pipe.segment_tile,
        "piece": pipe.segmenter.scales[0].net.piece, "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "allocator": allocator.in_use(), "rows": rows,
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


def register(bsub: Any) -> None:
    """Add ``bench segment`` to the ``bench`` group."""
    s = bsub.add_parser("segment", help="segmentation speed, memory and conv efficiency")
    s.add_argument("--size", type=csv_ints, default=[256, 512, 1024], help="square image sides, e.g. 512,1024,4096")
    s.add_argument("--device", default="auto")
    s.add_argument("--preset", default="base", help="preset for a random-weight model (default base)")
    s.add_argument("--classes", type=int, default=4, help="classes of the random-weight model")
    s.add_argument("--model", help="benchmark this serving file or bundled model instead")
    s.add_argument("--repeat", type=int, default=2, help="timed runs per size (the best counts)")
    s.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    s.add_argument("--tile", type=int, help=f"tile side of the segmenter scales, 0 = whole scales (default {SEGMENT_TILE})")
    s.add_argument("--piece", type=int,
                   help=f"piece side of the dense blocks, 0 = whole levels (default: {PIECE} on a CPU, off on CUDA)")
    s.add_argument("--json", default="bench-segment.json", help="where to write the results")
    s.set_defaults(func=cmd_bench_segment)
