"""An exponential moving average of the current scale's generator weights (``TrainConfig.ema``).

A GAN's generator oscillates around what its discriminator accepts; the average of its
recent weights is a smoother point on that orbit (Yazici et al. 2019, "The Unusual
Effectiveness of Averaging in GAN Training"; StyleGAN and BigGAN sample from it). Within a
scale the average rides beside training and never feeds back into it (D and S see the
generator being trained, and the scale draws the same steps with or without it); what the
scale keeps (samples, snapshots, serving files) is the average, and the finer scales train
on top of that.

The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so the
randomly initialised weights of the first steps fade within tens of steps even when a
scale trains only a few hundred.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

MultiAvgFn = Callable[[list[Tensor], list[Tensor], Tensor], None]


def ramped_decay(decay: float, updates: Tensor) -> Tensor:
    """The decay of the update after ``updates`` earlier ones (a 0-d tensor: no host sync)."""
    return torch.clamp((updates + 1.0) / (updates + 10.0), max=decay)


def _ramped_ema(decay: float) -> MultiAvgFn:
    def update(averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        if not averaged[0].is_floating_point():  # counters (BatchNorm's batches tracked): the latest
            torch._foreach_copy_(averaged, current)
            return
        keep = ramped_decay(decay, updates.to(torch.float64)).to(averaged[0].dtype)
        torch._foreach_mul_(averaged, keep)
        torch._foreach_add_(averaged, torch._foreach_mul(current, 1.0 - keep))

    return update


class WeightAverage:
    """The moving average of one module's parameters (and buffers).

    Args:
        module: the network being trained; a copy of it holds the average.
        decay: the largest per-step decay, in (0, 1): about ``1 / (1 - decay)`` recent steps count.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema must be in (0, 1) (0 turns it off), got {decay}")
        self.averaged = AveragedModel(module, multi_avg_fn=_ramped_ema(decay), use_buffers=True)
        self.averaged.requires_grad_(False)

    def update(self, module: nn.Module) -> None:
        """Fold the module's current weights in (the first call copies them)."""
        self.averaged.update_parameters(module)

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    def copy_to(self, module: nn.Module) -> None:
        """Overwrite the module's weights with the average."""
        with torch.no_grad():
            for target, source in zip(_tensors(module), _tensors(self.averaged.module), strict=True):
                target.copy_(source)

    @contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """The average in the module for the block's duration; the trained weights after it."""
        with torch.no_grad():
            trained = [t.detach().clone() for t in _tensors(module)]
        self.copy_to(module)
        try:
            yield
        finally:
            with torch.no_grad():
                for target, saved in zip(_tensors(module), trained, strict=True):
                    target.copy_(saved)

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)


def _tensors(module: nn.Module) -> list[Tensor]:
    return [*module.parameters(), *module.buffers()]
