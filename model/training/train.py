"""Coarse-to-fine training of the generator/segmenter/discriminator pyramid (Alg. 1-3).

``train()`` does not know who runs it: the CLI passes a progress bar, the RQ job maps
``on_progress``/``should_stop`` to ``job.meta`` and cancellation. Every finished scale
and every ``checkpoint_every`` steps a resumable ``state.pt`` is written; ``resume=True``
continues from it exactly (same scale, step, weights, optimiser state and RNG streams).
With ``nproc`` > 1 (or under torchrun) it trains data-parallel on several processes
(:mod:`model.training.distributed`): rank 0 reports and writes, every rank draws its own crops.

Every finished scale is also a small serving file, ``scales/scale{n}.pt``, whose metadata
says how many scales are trained; ``init_from`` starts a new run at the next unfinished
scale of such a file (on another machine too). Each scale draws from random streams seeded
by (seed, scale), so a run continued from a float32 partial file equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model import allocator, report
from model.checkpoint import atomic_save, load_scales, save_model
from model.config import ModelConfig, TrainConfig, to_dict
from model.device import autocast_dtype, native_bf16, resolve_device
from model.nets.critic import MaskCritic
from model.nets.discriminator import PyramidDiscriminator
from model.nets.generator import PyramidGenerator
from model.nets.segmenter import PyramidSegmenter
from model.training import distributed
from model.training.average import WeightAverage
from model.training.batches import BatchMaker
from model.training.critic import train_critic
from model.training.data import Dataset, TileSampler, split_labeled
from model.training.detail import detail_axes
from model.training.losses import load_perceptual
from model.training.steps import Losses, ScaleNets, ScaleStep, read_losses

log = logging.getLogger("histosynth.train")


@dataclass
class Progress:
    """What a caller sees after every step."""

    scale: int
    scale_rank: int
    num_scales: int
    step: int
    steps_per_scale: int
    done_steps: int
    total_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    elapsed_s: float = 0.0


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path | None
    stopped: bool


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    dataset: Dataset,
    out_dir: str | Path,
    *,
    name: str,
    resume: bool = False,
    init_from: str | Path | None = None,
    init_scales: int | None = None,
    eval_images: list[np.ndarray] | None = None,
    metadata: dict[str, Any] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress_bar: bool = False,
    nproc: int = 1,
    dist_ctx: distributed.DistContext | None = None,
) -> TrainResult:
    """Train every scale from coarse to fine and write the run directory.

    Args:
        dataset: labelled pairs (and unlabelled images for ``ssl``).
        out_dir: run directory: config.json, metrics.jsonl, losses.png, samples/, state.pt, model.pt.
        name: model name stored in the serving file.
        resume: continue from ``out_dir/state.pt``; without it an existing state is an error.
            An existing state takes precedence over ``init_from``.
        init_from: a (partly) trained serving file of the same generator and segmenter
            config: its trained scales are reused frozen and training starts at the next one.
        init_scales: reuse only this many of its coarsest scales (default: all it trained).
        eval_images: ``ssl`` + ``transductive``: evaluation images added to the unlabelled pool.
        metadata: extra provenance stored in the serving file (command, preset, data source...).
        on_progress: called after every step with a :class:`Progress`.
        should_stop: polled every step; True checkpoints and returns ``stopped=True``.
        progress_bar: show a tqdm bar with scale, step, losses and ETA.
        nproc: processes on this machine (data-parallel; rank 0 is this one). Under torchrun
            the process count comes from torchrun.
        dist_ctx: this process's rank (set for the ranks :class:`distributed.Launch` spawns).
    """
    out = Path(out_dir)
    ctx = dist_ctx or distributed.from_env()
    if ctx is not None and nproc > 1 and nproc != ctx.world:
        raise ValueError(f"nproc {nproc} differs from the {ctx.world} processes torchrun started")
    if ctx is None or ctx.main:
        _check_inputs(model_cfg, train_cfg, dataset)
        out.mkdir(parents=True, exist_ok=True)
        if (out / "state.pt").exists() and not resume:
            raise ValueError(f"{out} already holds a training state; pass --resume or choose another output folder")
    args = (model_cfg, train_cfg, dataset, out, name, eval_images, metadata or {})
    init = (init_from, init_scales)
    callbacks = (on_progress, should_stop, progress_bar)
    if ctx is not None or nproc == 1:
        return _run_rank(*args, resume, init, ctx or distributed.SINGLE, callbacks)
    distributed.check_nproc(nproc, resolve_device(train_cfg.device))
    kwargs = {"model_cfg": model_cfg, "train_cfg": train_cfg, "dataset": dataset, "out_dir": out,
              "name": name, "resume": resume, "init_from": init_from, "init_scales": init_scales,
              "eval_images": eval_images, "metadata": metadata}
    launch = distributed.Launch(nproc, train, kwargs)
    try:
        result = _run_rank(*args, resume, init, launch.ctx, callbacks, launch)
    except BaseException:
        launch.terminate()
        raise
    launch.join()
    return result


def _run_rank(model_cfg: ModelConfig, train_cfg: TrainConfig, dataset: Dataset, out: Path, name: str,
              eval_images: list[np.ndarray] | None, metadata: dict[str, Any], resume: bool,
              init: tuple[str | Path | None, int | None], ctx: distributed.DistContext, callbacks: tuple[Any, Any, bool],
              spawned: distributed.Launch | None = None) -> TrainResult:
    """This process's part: rank 0 gets the callbacks and writes; the others only train.
    ``spawned``: the ranks this process launched (it leaves the group after them)."""
    trainer = Trainer(model_cfg, train_cfg, dataset, out, name, eval_images, metadata, ctx)
    try:
        if resume and (out / "state.pt").exists():
            trainer.load_state(out / "state.pt")
        else:  # a new run: records of an earlier one that stopped before its first state go
            if ctx.main:
                trainer.log.clear()
            if init[0] is not None:
                trainer.init_from(Path(init[0]), init[1])
        result = trainer.run(*callbacks) if ctx.main else trainer.run(None, None, False)
    except BaseException:
        distributed.shutdown(ctx, wait=False)
        raise
    distributed.shutdown(ctx, spawned=spawned)
    return result


def _check_inputs(model_cfg: ModelConfig, train_cfg: TrainConfig, dataset: Dataset) -> None:
    if model_cfg.num_classes != dataset.classes.num_classes:
        raise ValueError(
            f"model has {model_cfg.num_classes} classes but the dataset's class table has "
            f"{dataset.classes.num_classes}"
        )
    if train_cfg.tile_size % model_cfg.factor:
        raise ValueError(f"tile_size {train_cfg.tile_size} must be a multiple of 2**(scales-1) = {model_cfg.factor}")
    if train_cfg.crop_size % 8 or train_cfg.crop_size < 16:
        raise ValueError(f"crop_size {train_cfg.crop_size} must be a multiple of 8 and at least 16")
    if not dataset.images:
        raise ValueError("the dataset has no labelled images")
    train_cfg.lr_factor(0)  # checks lr_decay
    if train_cfg.loss.mask < 0:
        raise ValueError(f"loss.mask must be at least 0 (0: off), got {train_cfg.loss.mask}")
    if train_cfg.loss.mask_floor not in ("zero", "real"):
        raise ValueError(f"unknown loss.mask_floor {train_cfg.loss.mask_floor!r}; choose zero or real")
    if train_cfg.loss.mask > 0 and train_cfg.critic.steps < 1:
        raise ValueError(f"loss.mask > 0 needs a trained critic: critic.steps must be at least 1, "
                         f"got {train_cfg.critic.steps}")
    if not 0.0 <= train_cfg.ema < 1.0:
        raise ValueError(f"ema must be in [0, 1) (0: off), got {train_cfg.ema}")
    if train_cfg.log_every < 1:
        raise ValueError(f"log_every must be at least 1, got {train_cfg.log_every}")
    if train_cfg.checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {train_cfg.checkpoint_every}")
    for name in ("sample_every", "snapshot_every"):
        if getattr(train_cfg, name) < 0:
            raise ValueError(f"{name} must be at least 0 (0: off), got {getattr(train_cfg, name)}")


def adam(module: nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with the fused kernel (CPU and CUDA): one pass over all parameters instead of a
    loop of small ops per tensor; 3x faster updates of the 5M-parameter D on a CPU, the same
    values to float rounding."""
    return torch.optim.Adam(module.parameters(), lr=lr, betas=betas, fused=True)


class Trainer:
    """Holds the networks, samplers and counters of one run."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, dataset: Dataset, out: Path,
                 name: str, eval_images: list[np.ndarray] | None, metadata: dict[str, Any],
                 dist_ctx: distributed.DistContext = distributed.SINGLE) -> None:
        self.model_cfg, self.cfg, self.out, self.name = model_cfg, cfg, out, name
        self.dataset, self.extra_metadata, self.dist = dataset, metadata, dist_ctx
        self.device = dist_ctx.device(resolve_device(cfg.device))
        distributed.init(dist_ctx, self.device)
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)
        if self.amp_dtype is not None and not native_bf16(self.device):
            log.warning("precision bfloat16 on a CPU without AVX512-BF16 or AMX: emulated, "
                        "slower than float32")
        if self.device.type == "cpu" and dist_ctx.main:
            log.info(allocator.describe())
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        # channels-last: oneDNN and cuDNN run these convolutions markedly faster
        cl = torch.channels_last
        self.generator = PyramidGenerator(model_cfg).to(self.device, memory_format=cl)
        self.segmenter = PyramidSegmenter(model_cfg).to(self.device, memory_format=cl)
        self.discriminator = PyramidDiscriminator(model_cfg).to(self.device, memory_format=cl)
        self.perceptual = load_perceptual(cfg.perceptual_weights)
        if self.perceptual is not None:
            self.perceptual.to(self.device)
        self.labeled, unlabeled = self._split(dataset, eval_images)
        self._measure_detail_axes()
        seed = cfg.seed + dist_ctx.rank  # every rank its own crops and noise
        if dist_ctx.rank:
            torch.manual_seed(seed)
        self.sampler = TileSampler(self.labeled.images, self.labeled.masks, cfg.tile_size,
                                   cfg.tile_overlap, cfg.color_jitter, seed)
        self.unlabeled_sampler = (
            TileSampler(unlabeled, None, cfg.tile_size, cfg.tile_overlap, cfg.color_jitter, seed + 1)
            if cfg.mode == "ssl" else None
        )
        self.gen = torch.Generator().manual_seed(seed)  # noise, crops, pseudo-label choice
        self.batches = BatchMaker(self)
        self.step_fn = ScaleStep(cfg.loss, self.perceptual, self.autocast, cfg.d_steps, cfg.augment)
        self.rank, self.step, self.elapsed = 0, 0, 0.0
        self.nets: ScaleNets | None = None
        self.average: WeightAverage | None = None  # the current scale's G average (cfg.ema)
        self.critic: MaskCritic | None = None  # the current scale's frozen mask critic
        self.critic_reports: dict[str, dict[str, Any]] = {}  # scale -> CriticReport.to_dict()
        self.log = report.MetricsLog(out / "metrics.jsonl")
        self.pending: list[Losses] = []  # losses of the steps not read yet (log_every)
        self.last_losses: dict[str, float] = {}

    # ---- setup --------------------------------------------------------------------
    def _measure_detail_axes(self) -> None:
        """Store the real training images' detail colour axes in every scale that projects
        its residual onto them (``generator.detail_rank``); a resumed run or a reused scale
        loads the same values afterwards."""
        if not self.generator.needs_detail_axes():
            return
        axes, shares = detail_axes(self.labeled.images, self.model_cfg.generator.output)
        self.generator.set_detail_axes(axes.to(self.device))
        self.extra_metadata = {**self.extra_metadata,
                               "detail_axes": {"axes": axes.tolist(), "variance_shares": shares.tolist()}}
        log.info("fine detail of the real images: %s of its colour variance along the first axes",
                 ", ".join(f"{s:.3f}" for s in shares.tolist()))

    def _split(self, dataset: Dataset, eval_images: list[np.ndarray] | None) -> tuple[Dataset, list[np.ndarray]]:
        cfg = self.cfg
        labeled, unlabeled = dataset, list(dataset.unlabeled)
        if cfg.mode == "ssl" and cfg.labeled_fraction < 1.0:
            labeled, unlabeled = split_labeled(dataset, cfg.labeled_fraction, cfg.seed)
        if cfg.mode == "ssl" and cfg.transductive:
            unlabeled += list(eval_images or [])
        if cfg.mode == "ssl" and not unlabeled:
            raise ValueError(
                "ssl mode needs unlabelled images: add an unlabeled/ folder, set labeled_fraction < 1 "
                "or use transductive with evaluation images"
            )
        return labeled, unlabeled

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward passes' precision (``TrainConfig.precision``)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def num_scales(self) -> int:
        return self.model_cfg.num_scales

    @property
    def total_steps(self) -> int:
        return self.num_scales * self.cfg.steps_per_scale

    def scale_of(self, rank: int) -> int:
        return self.num_scales - 1 - rank

    def _make_nets(self, n: int) -> ScaleNets:
        """Optimisers for scale n only: finished scales are frozen and hold no optimiser state."""
        cfg, joint = self.cfg, self.cfg.mode != "generate"
        g, d, s = self.generator.scales[n], self.discriminator.scales[n], self.segmenter.scales[n]
        for module in (g, d, s):
            module.train()
        nets = ScaleNets(
            generator=g,
            discriminator=d,
            opt_g=adam(g, cfg.lr_g, cfg.betas),
            opt_d=adam(d, cfg.lr_d, cfg.betas),
            segmenter=s if joint else None,
            opt_s=adam(s, cfg.lr_s, cfg.betas) if joint else None,
            critic=self.critic,
            critic_floor=self._critic_floor(n),
        )
        for opt in (nets.opt_g, nets.opt_d, nets.opt_s):
            if opt is not None:
                distributed.average_gradients(opt, self.dist)
        self.average = WeightAverage(g, cfg.ema) if cfg.ema > 0 else None
        return nets

    def _critic_floor(self, n: int) -> float:
        """What the mask term does not pay: nothing, or the critic's real-pair cross-entropy."""
        report_ = self.critic_reports.get(str(n))
        return float(report_["ce"]) if self.cfg.loss.mask_floor == "real" and report_ is not None else 0.0

    def _freeze(self, n: int) -> None:
        for module in (self.generator.scales[n], self.segmenter.scales[n], self.discriminator.scales[n]):
            distributed.broadcast_buffers(module, self.dist)  # rank 0's BatchNorm statistics
            module.eval()
            module.requires_grad_(False)
        self.discriminator.scales[n].to("cpu")  # D_n is not needed at finer scales

    # ---- the loop -----------------------------------------------------------------
    def run(self, on_progress: Callable[[Progress], None] | None,
            should_stop: Callable[[], bool] | None, progress_bar: bool) -> TrainResult:
        if self.dist.main:
            self._write_config()
        bar = self._bar(progress_bar)
        started = time.perf_counter() - self.elapsed
        start_done = self.rank * self.cfg.steps_per_scale + self.step
        try:
            while self.rank < self.num_scales:
                n = self.scale_of(self.rank)
                if self.nets is None:
                    self._begin_scale(n)
                if self.step == 0:
                    self._snapshot(n)
                while self.step < self.cfg.steps_per_scale:
                    stop = should_stop is not None and should_stop()
                    if distributed.any_rank(stop, self.dist, self.device):  # all ranks stop together
                        self.elapsed = time.perf_counter() - started
                        self._read_pending(n, start_done, bar, on_progress)
                        self.save_state()
                        log.info("stopped at scale %d step %d; state saved", n, self.step)
                        return TrainResult(self.out, None, stopped=True)
                    self.pending.append(self._one_step(n))
                    self.elapsed = time.perf_counter() - started
                    if self._read_due():
                        self._read_pending(n, start_done, bar, on_progress)
                    elif self.dist.main:
                        self._tick(self._progress(n, self.last_losses, start_done), bar, on_progress)
                    if self.step % self.cfg.checkpoint_every == 0 and self.step < self.cfg.steps_per_scale:
                        self.save_state()
                    if (self.dist.main and self.cfg.sample_every and self.step % self.cfg.sample_every == 0
                            and self.step < self.cfg.steps_per_scale):
                        self._samples(n, self.step)
                    if self.cfg.snapshot_every and self.step % self.cfg.snapshot_every == 0:
                        self._snapshot(n)
                self._end_scale(n)
        finally:
            if bar is not None:
                bar.close()
        return TrainResult(self.out, self._export() if self.dist.main else None, stopped=False)

    def _begin_scale(self, n: int) -> None:
        if self.step == 0:  # mean over the ranks' crops: the same amplitude everywhere
            self._train_critic(n)
            self._seed_scale()
            self.generator.noise_amp[n] = distributed.mean(self.batches.noise_amplitude(n), self.dist, self.device)
        self.nets = self._make_nets(n)

    def _train_critic(self, n: int) -> None:
        """Scale n's mask critic on real pairs, from its own seeded streams (every rank the same)."""
        if self.cfg.loss.mask <= 0:
            return
        self.critic, report_ = train_critic(self.sampler, self.cfg, self.model_cfg, n,
                                           self.cfg.batch_size(self.rank), self.device)
        self.critic_reports[str(n)] = report_.to_dict()
        log.info("scale %d mask critic: %d steps on real pairs, cross-entropy %.3f, pixel accuracy %.3f",
                 n, report_.steps, report_.ce, report_.accuracy)

    def _check_critic(self, n: int) -> None:
        """Store G's last mask cross-entropy beside the critic's on real pairs, and warn when G
        reads as its mask better than real tissue does: a fooled critic, not a win."""
        report_ = self.critic_reports.get(str(n))
        fake_ce = self.last_losses.get("g_mask")
        if report_ is None or fake_ce is None:
            return
        report_["g_mask_end"] = fake_ce
        if fake_ce < report_["ce"]:
            log.warning("scale %d: G's images read as their mask better than real tissue does to the mask "
                        "critic (cross-entropy %.3f against %.3f on real pairs): the critic may be fooled; "
                        "look at the samples", n, fake_ce, report_["ce"])

    def _seed_scale(self) -> None:
        """Seed every random stream by (seed, scale): a scale's draws do not depend on how
        the coarser scales were reached (trained here or read with ``init_from``)."""
        key = (self.cfg.seed + self.dist.rank) * 1_000_003 + self.rank  # every process its own draws
        torch.manual_seed(key)
        self.gen.manual_seed(key)
        self.sampler.reseed(key)
        if self.unlabeled_sampler is not None:
            self.unlabeled_sampler.reseed(key + 1)

    def _read_due(self) -> bool:
        """Losses are read every ``log_every`` steps, before a checkpoint and at a scale's end."""
        step = self.step
        return (step % self.cfg.log_every == 0 or step % self.cfg.checkpoint_every == 0
                or step == self.cfg.steps_per_scale)

    def _read_pending(self, n: int, start_done: int, bar: Any,
                      on_progress: Callable[[Progress], None] | None) -> None:
        """Read (one host sync) and log the mean losses of the steps since the last read; every
        rank checks them, so a non-finite loss stops all ranks before the next checkpoint."""
        if not self.pending:
            return
        count = len(self.pending)
        self.last_losses = read_losses(self.pending)
        self.pending = []
        if self.dist.main:
            p = self._progress(n, self.last_losses, start_done)
            self._report(p, bar, on_progress, steps=count)

    def _one_step(self, n: int) -> Losses:
        assert self.nets is not None
        use_synthetic = self.cfg.mode != "generate" and self.step >= self.cfg.holdout_steps
        self._set_learning_rates()
        batch = self.batches.make(n, use_synthetic)
        logs = self.step_fn.run(self.nets, batch, use_synthetic)
        if self.average is not None:
            self.average.update(self.nets.generator)
        self.step += 1
        return logs

    def _set_learning_rates(self) -> None:
        """The configured rates times ``lr_decay``'s factor for this step (a function of the step:
        resuming needs no scheduler state)."""
        assert self.nets is not None
        factor = self.cfg.lr_factor(self.step)
        pairs = [(self.nets.opt_g, self.cfg.lr_g), (self.nets.opt_d, self.cfg.lr_d), (self.nets.opt_s, self.cfg.lr_s)]
        for opt, base in pairs:
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = base * factor

    def _end_scale(self, n: int) -> None:
        self._check_critic(n)
        if self.average is not None:  # the scale keeps its average weights
            self.average.copy_to(self.generator.scales[n])
        self._freeze(n)
        self.nets, self.critic, self.average = None, None, None
        if self.dist.main:
            self._samples(n)
        self.rank += 1
        self.step = 0
        self.save_state()
        if self.dist.main:
            if self.rank < self.num_scales:  # a partial serving file: continue with init_from
                save_model(self.out / "scales" / f"scale{n}.pt", self.generator, self.segmenter,
                           self.model_cfg, self.dataset.classes, self._metadata())
            report.plot_losses(self.log.read(), self.out / "losses.png")

    # ---- reporting ----------------------------------------------------------------
    def _progress(self, n: int, logs: dict[str, float], start_done: int) -> Progress:
        done = self.rank * self.cfg.steps_per_scale + self.step
        rate = (done - start_done) / max(self.elapsed, 1e-9) if done > start_done else 0.0
        eta = (self.total_steps - done) / rate if rate > 0 else None
        return Progress(n, self.rank, self.num_scales, self.step, self.cfg.steps_per_scale, done,
                        self.total_steps, logs, eta, self.elapsed)

    def _report(self, p: Progress, bar: Any, on_progress: Callable[[Progress], None] | None,
                steps: int = 1) -> None:
        """A metrics record of the losses read (their mean over ``steps`` steps), then progress."""
        record: dict[str, Any] = {"scale": p.scale, "rank": p.scale_rank, "step": p.step,
                                  "global_step": p.done_steps, "time_s": round(p.elapsed_s, 3)}
        if steps > 1:
            record["mean_of_steps"] = steps
        record.update({f"loss/{k}": round(v, 6) for k, v in p.losses.items()})
        self.log.append(record)
        self._tick(p, bar, on_progress)

    def _tick(self, p: Progress, bar: Any, on_progress: Callable[[Progress], None] | None) -> None:
        """Progress bar and callback (with the losses last read)."""
        if bar is not None:
            bar.update(p.done_steps - bar.n)
            bar.set_description(f"scale {p.scale} ({p.scale_rank + 1}/{p.num_scales}) step {p.step}")
            bar.set_postfix({k: f"{v:.3g}" for k, v in p.losses.items() if k in ("d", "g", "s", "g_rec")})
        if on_progress is not None:
            on_progress(p)

    def _bar(self, enabled: bool) -> Any:
        if not enabled:
            return None
        from tqdm import tqdm

        return tqdm(total=self.total_steps, initial=self.rank * self.cfg.steps_per_scale + self.step,
                    unit="step", dynamic_ncols=True)

    def _kept_weights(self, n: int) -> contextlib.AbstractContextManager:
        """Scale n's generator as the scale would keep it now: its weight average, if any."""
        if self.average is None or self.rank >= self.num_scales or self.scale_of(self.rank) != n:
            return contextlib.nullcontext()
        return self.average.applied(self.generator.scales[n])

    def _snapshot(self, n: int) -> None:
        """``snapshots/scale{n}-step{k}.pt``: the run as it stands, scale n counted as trained
        (a serving file once n = 0; coarser ones are partial files), for a learning curve."""
        if not (self.cfg.snapshot_every and self.dist.main):
            return
        meta = {**self._metadata(), "scales_trained": self.rank + 1, "snapshot": {"scale": n, "step": self.step}}
        with self._kept_weights(n):
            save_model(self.out / "snapshots" / f"scale{n}-step{self.step}.pt", self.generator, self.segmenter,
                       self.model_cfg, self.dataset.classes, meta)

    def _samples(self, n: int, step: int | None = None) -> None:
        """The sample grid of scale n: ``scale{n}.png`` at its end, ``scale{n}-step{k}.png`` during it."""
        g = self.generator.scales[n]
        was_training = g.training
        g.eval()  # BatchNorm, if any, draws with its running statistics as at inference
        try:
            with self._kept_weights(n):
                grid = self.batches.sample_grid(n)
        finally:
            g.train(was_training)
        name = f"scale{n}.png" if step is None else f"scale{n}-step{step}.png"
        report.save_png(grid, self.out / "samples" / name)

    def _perceptual_note(self) -> str:
        if self.perceptual is None:
            return "off: no VGG19 weights file configured (perceptual_weights)"
        return f"on: {self.cfg.perceptual_weights}"

    def _write_config(self) -> None:
        config = {"name": self.name, "model": to_dict(self.model_cfg), "train": to_dict(self.cfg),
                  "classes": self.dataset.classes.to_dict(), "perceptual": self._perceptual_note(),
                  "device": str(self.device), "metadata": self.extra_metadata}
        (self.out / "config.json").write_text(json.dumps(config, indent=2))
        if self.perceptual is None and self.rank == 0 and self.step == 0:
            log.warning("perceptual loss %s", self._perceptual_note())

    # ---- state ----------------------------------------------------------------------
    def save_state(self) -> None:
        """Rank 0 writes the weights and every rank's random streams (all ranks call this)."""
        streams = distributed.gather(self._streams(), self.dist)
        if not self.dist.main:
            return
        state = {
            "rank": self.rank, "step": self.step, "elapsed": self.elapsed,
            "generator": self.generator.state_dict(), "segmenter": self.segmenter.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt": self._opt_states(), **streams[0],
            "critic": self.critic.state_dict() if self.critic is not None else None,
            "critic_reports": self.critic_reports,
            "average": self.average.state_dict() if self.average is not None else None,
            "world": self.dist.world, "rank_streams": streams[1:],
        }
        atomic_save(state, self.out / "state.pt")

    def _streams(self) -> dict[str, Any]:
        """This rank's random streams: samplers, noise generator, torch (and CUDA) RNG."""
        return {
            "sampler": self.sampler.state_dict(),
            "unlabeled_sampler": self.unlabeled_sampler.state_dict() if self.unlabeled_sampler else None,
            "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def _opt_states(self) -> dict[str, Any] | None:
        if self.nets is None:
            return None
        opts = {"g": self.nets.opt_g, "d": self.nets.opt_d, "s": self.nets.opt_s}
        return {k: o.state_dict() for k, o in opts.items() if o is not None}

    def load_state(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        world = state.get("world", 1)
        if world != self.dist.world:
            raise ValueError(f"{path} was written by a run with {world} process(es); resume it with "
                             f"--nproc {world} (this run has {self.dist.world}) to continue exactly")
        if self.dist.rank:
            state.update(state["rank_streams"][self.dist.rank - 1])
        self.generator.load_state_dict(state["generator"])
        self.segmenter.load_state_dict(state["segmenter"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.rank, self.step, self.elapsed = state["rank"], state["step"], state["elapsed"]
        for r in range(self.rank):
            self._freeze(self.scale_of(r))
        self._load_critic(state)
        if self.rank < self.num_scales and (self.step > 0 or state["opt"] is not None):
            self.nets = self._make_nets(self.scale_of(self.rank))
            for key, opt in (("g", self.nets.opt_g), ("d", self.nets.opt_d), ("s", self.nets.opt_s)):
                if opt is not None and state["opt"] and key in state["opt"]:
                    opt.load_state_dict(state["opt"][key])
            if self.average is not None and state.get("average") is not None:
                self.average.load_state_dict(state["average"])
        self.sampler.load_state_dict(state["sampler"])
        if self.unlabeled_sampler is not None and state["unlabeled_sampler"] is not None:
            self.unlabeled_sampler.load_state_dict(state["unlabeled_sampler"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if self.dist.main:
            self.log.truncate_after(self.rank * self.cfg.steps_per_scale + self.step)

    def _load_critic(self, state: dict[str, Any]) -> None:
        """The current scale's frozen critic, as the stopped run had trained it."""
        self.critic_reports = dict(state.get("critic_reports") or {})
        if state.get("critic") is None:
            return
        self.critic = MaskCritic(self.model_cfg.num_classes, self.cfg.critic).to(self.device)
        self.critic.load_state_dict(state["critic"])
        self.critic.eval()
        self.critic.requires_grad_(False)

    def init_from(self, path: Path, scales: int | None) -> None:
        """Reuse the trained coarse scales of a serving file; training starts after them."""
        scales = load_scales(path, self.generator, self.segmenter, self.model_cfg, self.dataset.classes, scales)
        self.rank, self.step = scales, 0
        for r in range(scales):
            self._freeze(self.scale_of(r))
        self.extra_metadata = {**self.extra_metadata, "init_from": {"file": str(path), "scales": scales}}
        log.info("reusing the %d coarsest scale(s) of %s; training starts at scale %d",
                 scales, path, self.scale_of(scales))

    def _metadata(self) -> dict[str, Any]:
        meta = {
            "name": self.name, "mode": self.cfg.mode, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "train_config": to_dict(self.cfg), "steps_per_scale": self.cfg.steps_per_scale,
            "total_steps": self.total_steps, "wall_time_s": round(self.elapsed, 1),
            "device": str(self.device), "machine": platform.platform(), "torch": torch.__version__,
            "allocator": allocator.in_use(), "perceptual": self._perceptual_note(),
            "has_segmenter": self.cfg.mode != "generate", "processes": self.dist.world,
            "dataset": {"root": self.dataset.root, "names": list(self.labeled.names),
                        "classes": self.dataset.classes.name},
            "scales_trained": self.rank,
        }
        if self.critic_reports:  # how well each scale's critic segmented real pairs
            meta["mask_critic"] = dict(self.critic_reports)
        meta.update(self.extra_metadata)
        return meta

    def _export(self) -> Path:
        return save_model(self.out / "model.pt", self.generator, self.segmenter, self.model_cfg,
                          self.dataset.classes, self._metadata())
