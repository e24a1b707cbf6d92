"""The mask critic of a scale (``LossConfig.mask``): trained on real pairs only, then frozen.

Before a scale's first step the trainer calls :func:`train_critic`: a :class:`MaskCritic`
learns to segment the real images of the scale (random regions of ``crop_size`` scale
pixels, colour-jittered, flipped and turned like every training tile) from its own seeded
streams, so the scale's own draws are the same with or without a critic. G_n then pays the
critic's cross-entropy on its image (:func:`mask_consistency`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from model.config import ModelConfig, TrainConfig
from model.nets.critic import MaskCritic
from model.tensors import mask_pyramid_from
from model.training.data import TileSampler, Window, random_window


@dataclass(frozen=True)
class CriticReport:
    """How well the critic segments real pairs at the end of its training (its last 10 % of
    steps, on the batches it trained on): soft cross-entropy and pixel accuracy."""

    scale: int
    steps: int
    ce: float
    accuracy: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def mask_consistency(logits: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of critic logits (B, K, h, w) against a soft one-hot mask (B, K, h, w)."""
    return F.cross_entropy(logits.float(), mask.float())


def critic_key(seed: int, scale: int) -> int:
    """The critic's seed: every rank trains the same critic (no rank in the key)."""
    return seed * 1_000_003 + 500_009 + scale


def _region(cfg: TrainConfig, model_cfg: ModelConfig, n: int, gen: torch.Generator) -> Window:
    """A random full-resolution region of ``crop_size`` pixels of scale n (the whole tile when
    smaller), aligned to the pyramid."""
    f, tile = model_cfg.factor, cfg.tile_size
    return random_window(tile, min(tile, -(-cfg.crop_size * 2**n // f) * f), f, gen)


def critic_batch(sampler: TileSampler, cfg: TrainConfig, model_cfg: ModelConfig, n: int, batch: int,
                 gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
    """Real images of scale n (B, 3, h, w) and their soft one-hot masks (B, K, h, w)."""
    raw = sampler.sample_raw(batch, _region(cfg, model_cfg, n, gen))
    assert raw.labels is not None
    ys, _ = mask_pyramid_from(raw.labels.to(device), model_cfg.num_classes, model_cfg.num_scales, n)
    y = ys[n]
    assert y is not None
    return raw.images(device, 2**n), y


def train_critic(sampler: TileSampler, cfg: TrainConfig, model_cfg: ModelConfig, n: int, batch: int,
                 device: torch.device) -> tuple[MaskCritic, CriticReport]:
    """Train scale n's critic on real pairs and return it frozen, with its report.

    ``sampler`` is reseeded from :func:`critic_key` (the caller reseeds it for the scale after).
    """
    key = critic_key(cfg.seed, n)
    torch.manual_seed(key)  # the critic's initial weights
    gen = torch.Generator().manual_seed(key)
    sampler.reseed(key)
    critic = MaskCritic(model_cfg.num_classes, cfg.critic).to(device)
    opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic.lr, betas=(0.9, 0.999))
    tail = max(1, cfg.critic.steps // 10)
    ces: list[Tensor] = []
    hits: list[Tensor] = []
    for step in range(cfg.critic.steps):
        x, y = critic_batch(sampler, cfg, model_cfg, n, batch, gen, device)
        logits = critic(x)
        loss = mask_consistency(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= cfg.critic.steps - tail:
            ces.append(loss.detach())
            hits.append((logits.detach().argmax(1) == y.argmax(1)).float().mean())
    critic.eval()
    critic.requires_grad_(False)
    ce = float(torch.stack(ces).mean()) if ces else float("nan")
    acc = float(torch.stack(hits).mean()) if hits else float("nan")
    return critic, CriticReport(n, cfg.critic.steps, ce, acc)
