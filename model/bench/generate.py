"""``histosynth bench generate``: generation speed, memory and conv efficiency.

The machine's conv throughput is measured first (3x3 convolutions at the generator's
widths); each configuration then reports time per image, images/s, peak memory and the
achieved GFLOP/s of the generator's convolutions against that measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model import allocator
from model.arguments import resolve_model
from model.nets.fuse import set_tile, tiling_off
from model.report import Column, markdown_table


def conv_flops(model: nn.Module, run: Any) -> int:
    """Multiply-add FLOPs (x2) of every Conv2d during ``run()``, counted with hooks."""
    total = 0

    def hook(mod: nn.Conv2d | nn.ConvTranspose2d, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.ConvTranspose2d):  # every input pixel scatters to out_channels x k
            total += 2 * inp[0].numel() * (mod.out_channels // mod.groups) * k
        else:
            total += 2 * out.numel() * (mod.in_channels // mod.groups) * k

    convs = (nn.Conv2d, nn.ConvTranspose2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, convs)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total


def measure_conv_throughput(device: torch.device, side: int, widths: tuple[int, ...] = (32, 64),
                            repeat: int = 3) -> float:
    """Best GFLOP/s of plain 3x3 convolutions (width -> width, batch 1, side x side) on this
    device, in the faster of the two memory layouts: the machine's conv throughput at the
    generator's own widths and image size."""
    best = 0.0
    for c, layout in [(c, f) for c in widths for f in (torch.contiguous_format, torch.channels_last)]:
        conv = nn.Conv2d(c, c, 3, padding=1).to(device).eval().to(memory_format=layout)
        x = torch.randn(1, c, side, side, device=device).contiguous(memory_format=layout)
        flops = 2 * c * c * 9 * side * side
        with torch.inference_mode():
            conv(x)
            for _ in range(repeat):
                t = _timed(lambda conv=conv, x=x: conv(x), device)
                best = max(best, flops / t / 1e9)
    return best


def _timed(fn: Any, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


class PeakRSS:
    """Peak resident memory of this process above a baseline, sampled in a thread.

    The baseline is taken after the allocator has handed its cached free memory back to the
    OS: tcmalloc keeps what an earlier call freed, which would otherwise hide the next call's
    peak inside the baseline.
    """

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self.proc = psutil.Process(os.getpid())
        self.interval = interval
        allocator.release_free_memory()
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def bench_classes(num_classes: int) -> Any:
    """A class table ``c0``, ``c1``, ... for random-weight models."""
    from model.classes import ClassInfo, ClassTable

    colors = ["#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#f58231", "#911eb4", "#46f0f0", "#f032e6"]
    return ClassTable("bench", tuple(ClassInfo(f"c{i}", (i,), colors[i % 8]) for i in range(num_classes)))


def random_model(preset_name: str, num_classes: int, folder: Path) -> Path:
    """A serving file with freshly initialised weights (speed does not depend on training)."""
    from model.checkpoint import save_model
    from model.config import preset, replace
    from model.nets.generator import PyramidGenerator
    from model.nets.segmenter import PyramidSegmenter

    cfg = replace(preset(preset_name).model, num_classes=num_classes)
    classes = bench_classes(num_classes)
    torch.manual_seed(0)
    return save_model(folder / f"{preset_name}.pt", PyramidGenerator(cfg), PyramidSegmenter(cfg), cfg, classes,
                      {"name": f"random-{preset_name}"})


def bench_generate(pipe: Any, sizes: list[int], batches: list[int], repeat: int,
                   peaks: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """Time ``pipe.generate`` for every size x batch on random blocky masks.

    ``peaks``: conv throughput per size, measured once and shared between models.
    """
    rows = []
    rng = np.random.default_rng(0)
    peaks = {} if peaks is None else peaks
    for size in sizes:
        if size not in peaks:
            peaks[size] = measure_conv_throughput(pipe.device, size)
        peak = peaks[size]
        mask = rng.integers(0, pipe.classes.num_classes, (size // 32, size // 32))
        mask = np.kron(mask, np.ones((32, 32), np.int64))  # blocky, mask-like
        for batch in batches:
            def run(mask: np.ndarray = mask, batch: int = batch) -> Any:
                return pipe.generate(mask, n=batch, seed=0, encoding="index")

            with tiling_off(pipe.generator):  # the tiled path calls conv2d without hooks
                flops = conv_flops(pipe.generator, run)
            run()  # warm-up of the path that is timed
            if pipe.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with PeakRSS() as mem:
                times = [_timed(run, pipe.device) for _ in range(repeat)]
            t = float(np.median(times))
            gpu_mem = torch.cuda.max_memory_allocated() / 2**20 if pipe.device.type == "cuda" else None
            rows.append({
                "size": size, "batch": batch, "s_per_call": t, "s_per_image": t / batch,
                "images_per_s": batch / t, "peak_mem_mib": gpu_mem if gpu_mem is not None else mem.mib,
                "memory": "cuda max allocated" if gpu_mem is not None else "process RSS above baseline",
                "gflop_per_image": flops / batch / 1e9, "achieved_gflops": flops / t / 1e9,
                "conv_gflops": peak, "efficiency": flops / t / 1e9 / peak if peak else None,
            })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table (also readable in a terminal)."""
    return markdown_table(_COLUMNS, rows)


_COLUMNS: list[Column] = [
    ("size", "r", lambda r: f"{r['size']}"),
    ("batch", "r", lambda r: f"{r['batch']}"),
    ("s/image", "r", lambda r: f"{r['s_per_image']:.3f}"),
    ("images/s", "r", lambda r: f"{r['images_per_s']:.2f}"),
    ("peak MiB", "r", lambda r: f"{r['peak_mem_mib']:.0f}"),
    ("GFLOP/image", "r", lambda r: f"{r['gflop_per_image']:.1f}"),
    ("GFLOP/s", "r", lambda r: f"{r['achieved_gflops']:.1f}"),
    ("conv GFLOP/s", "r", lambda r: f"{r['conv_gflops']:.1f}"),
    ("of conv", "r", lambda r: f"{r['efficiency'] * 100:.0f}%"),
]


def cmd_bench_generate(args: argparse.Namespace, device: torch.device) -> int:
    """Time our generator on the CPU, print the table, write JSON."""
    from model.pipeline import load_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        path = resolve_model(args.model) if args.model else random_model(args.preset, args.classes, Path(tmp))
        pipe = load_pipeline(path, str(device))
        if args.tile is not None:
            set_tile(pipe.generator, args.tile)
        rows = bench_generate(pipe, args.size, args.batch, args.repeat)
    print(format_table(rows))
    print(allocator.describe())
    result = {
        "model": args.model or f"random weights, preset {args.preset}", "device": str(device),
        "threads": torch.get_num_threads(), "tile": _tile_of(pipe.generator), "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "allocator": allocator.in_use(), "rows": rows,
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


def _tile_of(generator: nn.Module) -> int | None:
    return next((m.tile for m in generator.modules() if getattr(m, "tile", None)), None)
