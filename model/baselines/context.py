"""What every baseline's training step reads: configs, device, samplers, RNG, perceptual loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from model.baselines.config import BaselineModelConfig, BaselineTrainConfig
from model.training.data import TileSampler


@dataclass
class Context:
    """Shared state of one baseline run.

    Args:
        model: the baseline's model config.
        train: its training config.
        device: where the networks run.
        sampler: labelled tiles.
        unlabeled: unlabelled tiles (``mean-teacher``), else None.
        perceptual: VGG19 perceptual loss (pix2pixHD with a weights file), else None.
        gen: CPU generator for noise, so a seed gives the same run.
    """

    model: BaselineModelConfig
    train: BaselineTrainConfig
    device: torch.device
    sampler: TileSampler
    unlabeled: TileSampler | None
    perceptual: nn.Module | None
    gen: torch.Generator

    def batch(self) -> tuple[Tensor, Tensor]:
        """Labelled tiles: x (B, 3, T, T) in [-1, 1] and labels (B, T, T) long, on the device."""
        x, labels = self.sampler.sample(self.train.batch_size)
        assert labels is not None
        return x.to(self.device), labels.to(self.device)

    def unlabeled_batch(self) -> Tensor:
        """Unlabelled tiles (B, 3, T, T) on the device."""
        if self.unlabeled is None:
            raise ValueError(f"{self.model.arch} needs unlabelled images")
        return self.unlabeled.sample(self.train.batch_size)[0].to(self.device)

    def randn_like(self, x: Tensor) -> Tensor:
        """Standard-normal noise shaped like ``x``, drawn from the run's CPU generator."""
        return torch.randn(x.shape, generator=self.gen).to(x.device, x.dtype)

    def adam(self, module: nn.Module, lr: float) -> torch.optim.Adam:
        """Adam over ``module``'s parameters with the run's betas."""
        return torch.optim.Adam(module.parameters(), lr=lr, betas=self.train.betas)
