"""``histosynth bench train``: training speed per scale, split into the batch and the D, G, S updates.

A real :class:`model.training.train.Trainer` runs on random images and masks (speed does
not depend on the data) from the coarsest scale to the finest, ``--steps`` timed steps per
scale after ``--warmup`` untimed ones. Each step is split where the optimisers step: the D
part also holds the forward passes of G and S that every player uses (phase 1 of
:class:`model.training.steps.ScaleStep`), the batch part the frozen coarser scales that
build the inputs. Conv FLOPs are counted with hooks on the forward pass and tripled where
gradients flow (input and weight gradients; doubled for frozen weights), and set against the machine's measured 3x3
conv throughput at the scale's crop size (as ``bench generate``).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model import allocator
from model.arguments import setting, split_settings
from model.bench.generate import bench_classes, measure_conv_throughput
from model.config import ModelConfig, TrainConfig, preset, replace
from model.device import PRECISIONS, resolve_device
from model.report import Column, markdown_table
from model.training.data import Dataset
from model.training.steps import ScaleNets
from model.training.train import Trainer

PARTS = ("batch", "D", "G", "S")


class PhaseMeter:
    """Seconds and conv FLOPs of each part of the steps run inside :meth:`step`.

    A part ends when its optimiser finishes ``step()`` (the batch part when
    :meth:`start_updates` is called): the time and FLOPs since the previous end are its own.
    On CUDA every part boundary waits for the device, so a part's time is its kernels' time
    and not only their launches (the step total then holds no overlap between parts).
    """

    def __init__(self, nets: ScaleNets, modules: list[nn.Module], device: torch.device) -> None:
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, float] = defaultdict(float)
        self._t, self._pending = 0.0, 0.0
        opts = [("D", nets.opt_d), ("G", nets.opt_g), ("S", nets.opt_s)]
        self._handles = [opt.register_step_post_hook(self._closer(part)) for part, opt in opts if opt is not None]
        convs = [m for module in modules for m in module.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        self._handles += [m.register_forward_hook(self._count) for m in convs]

    def _closer(self, part: str) -> Any:
        def hook(*_: Any) -> None:
            self._close(part)
        return hook

    def _close(self, part: str) -> None:
        """Time and FLOPs since the last close belong to ``part`` (so repeated D updates of
        one step all count as D)."""
        self._sync()
        now = time.perf_counter()
        self.seconds[part] += now - self._t
        self.flops[part] += self._pending
        self._t, self._pending = now, 0.0

    def _count(self, mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        k = mod.kernel_size[0] * mod.kernel_size[1]  # type: ignore[index]
        if isinstance(mod, nn.ConvTranspose2d):
            flops = 2 * inp[0].numel() * (mod.out_channels // mod.groups) * k
        else:
            flops = 2 * out.numel() * (mod.in_channels // mod.groups) * k  # type: ignore[operator]
        self._pending += flops * _passes(mod, out)

    @contextmanager
    def step(self) -> Iterator[None]:
        """Measure one step: the batch until D's update starts is the ``batch`` part."""
        self._sync()
        self._t, self._pending = time.perf_counter(), 0.0
        yield

    def start_updates(self) -> None:
        """The batch is ready: what follows belongs to D until its optimiser steps."""
        self._close("batch")

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _passes(mod: nn.Module, out: torch.Tensor) -> int:
    """Conv passes a forward call costs: 1, plus the input gradient when gradients flow
    through it, plus the weight gradient unless the weights are frozen (the mask critic)."""
    if not (torch.is_grad_enabled() and out.requires_grad):
        return 1
    return 3 if mod.weight.requires_grad else 2


def bench_train(model_cfg: ModelConfig, cfg: TrainConfig, steps: int, warmup: int) -> list[dict[str, Any]]:
    """Rows per scale (coarsest first) and part: seconds and GFLOP per step, conv share."""
    data = _random_dataset(model_cfg.num_classes, cfg.tile_size)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model_cfg, cfg, data, Path(tmp), "bench", None, {})
        for rank in range(model_cfg.num_scales):
            n = trainer.scale_of(rank)
            started = time.perf_counter()
            trainer._begin_scale(n)  # the mask critic trains here when train.loss.mask > 0
            setup = time.perf_counter() - started
            scale_rows = _bench_scale(trainer, n, steps, warmup)
            scale_rows[-1]["setup_s"] = setup
            rows += scale_rows
            trainer._freeze(n)
            trainer.nets, trainer.rank = None, rank + 1
    return rows


def _bench_scale(trainer: Trainer, n: int, steps: int, warmup: int) -> list[dict[str, Any]]:
    nets = trainer.nets
    assert nets is not None
    use_synthetic = trainer.cfg.mode != "generate"  # the dearer S step, as after the hold-out
    for _ in range(warmup):
        trainer.step_fn.run(nets, trainer.batches.make(n, use_synthetic), use_synthetic)
    modules = [trainer.generator, trainer.segmenter, trainer.discriminator]
    if nets.critic is not None:  # the frozen mask critic runs on G's images in the G part
        modules.append(nets.critic)
    meter = PhaseMeter(nets, modules, trainer.device)
    try:
        for _ in range(steps):
            with meter.step():
                batch = trainer.batches.make(n, use_synthetic)
                meter.start_updates()
                trainer.step_fn.run(nets, batch, use_synthetic)
    finally:
        meter.remove()
    b, _, h, w = batch.gen.x.shape
    peak = measure_conv_throughput(trainer.device, max(h, w))
    total = sum(meter.seconds.values()) / steps
    parts = [p for p in PARTS if p in meter.seconds]
    rows = [_row(n, b, h, w, p, meter.seconds[p] / steps, meter.flops[p] / steps, peak) for p in parts]
    rows.append({**_row(n, b, h, w, "step", total, sum(meter.flops.values()) / steps, peak),
                 "steps_per_s": 1 / total})
    return rows


def _row(n: int, b: int, h: int, w: int, part: str, seconds: float, flops: float, peak: float) -> dict[str, Any]:
    return {"scale": n, "batch": b, "crop": f"{h}x{w}", "part": part, "s_per_step": seconds,
            "steps_per_s": None, "gflop_per_step": flops / 1e9, "achieved_gflops": flops / seconds / 1e9,
            "conv_gflops": peak, "efficiency": flops / seconds / 1e9 / peak if peak else None}


def _random_dataset(num_classes: int, side: int) -> Dataset:
    """Two random RGB images with blocky masks and two unlabelled ones (for ssl); speed does
    not depend on the data."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(4)]
    block = max(1, side // 16)
    masks = [np.kron(rng.integers(0, num_classes, (-(-side // block),) * 2), np.ones((block, block), np.int64))
             [:side, :side] for _ in range(2)]
    return Dataset(bench_classes(num_classes), ["a", "b"], images[:2], masks, unlabeled=images[2:])


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table (also readable in a terminal), then each scale's setup time."""
    setup = ", ".join(f"scale {r['scale']} {r['setup_s']:.2f} s" for r in rows if "setup_s" in r)
    return (markdown_table(_COLUMNS, rows)
            + f"\nonce per scale, before its first step (the mask critic's training when train.loss.mask > 0, "
              f"the noise amplitude, the optimisers): {setup}")


_COLUMNS: list[Column] = [
    ("scale", "r", lambda r: f"{r['scale']}"),
    ("batch", "r", lambda r: f"{r['batch']}"),
    ("crop", "r", lambda r: r["crop"]),
    ("part", "l", lambda r: r["part"]),
    ("s/step", "r", lambda r: f"{r['s_per_step']:.3f}"),
    ("steps/s", "r", lambda r: f"{r['steps_per_s']:.2f}" if r["steps_per_s"] else ""),
    ("GFLOP/step", "r", lambda r: f"{r['gflop_per_step']:.1f}"),
    ("GFLOP/s", "r", lambda r: f"{r['achieved_gflops']:.1f}"),
    ("of conv", "r", lambda r: f"{r['efficiency'] * 100:.0f}%" if r["efficiency"] is not None else ""),
]


def cmd_bench_train(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write JSON."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    pre = preset(args.preset)
    set_model, set_train = split_settings(args.set)
    try:
        model_cfg = replace(pre.model, **{**set_model, "num_classes": args.classes})
        train_cfg = replace(pre.train, **{**set_train, "device": str(device), "perceptual_weights": None,
                                          **({"mode": args.mode} if args.mode else {}),
                                          **({"precision": args.precision} if args.precision else {})})
    except TypeError as exc:
        raise ValueError(f"bad config override: {exc}") from None
    rows = bench_train(model_cfg, train_cfg, args.steps, args.warmup)
    print(format_table(rows))
    print(allocator.describe())
    result = {"preset": args.preset, "mode": train_cfg.mode, "precision": train_cfg.precision,
              "settings": dict(args.set), "device": str(device),
              "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "allocator": allocator.in_use(), "steps": args.steps, "rows": rows}
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


def register(bsub: Any) -> None:
    """Add ``bench train`` to the ``bench`` group."""
    t = bsub.add_parser("train", help="training speed per scale: s/step, steps/s, GFLOP and conv share of D, G, S")
    t.add_argument("--preset", default="demo", help="model and training preset (default demo)")
    t.add_argument("--mode", choices=["generate", "joint", "ssl"], help="training mode (default: the preset's)")
    t.add_argument("--classes", type=int, default=4, help="classes of the random data")
    t.add_argument("--steps", type=int, default=3, help="timed steps per scale (default 3)")
    t.add_argument("--warmup", type=int, default=1, help="untimed steps per scale first (default 1)")
    t.add_argument("--device", default="auto")
    t.add_argument("--precision", choices=PRECISIONS,
                   help="forward passes, as in train (default auto: bfloat16 on CUDA, float32 on a CPU)")
    t.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    t.add_argument("--set", type=setting, action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset field as in train, e.g. train.loss.mask=1 (times the mask critic)")
    t.add_argument("--json", default="bench-train.json", help="where to write the results")
    t.set_defaults(func=cmd_bench_train)

