"""pix2pix and pix2pixHD training: one D update, one G update per step (Isola et al. 2017;
Wang et al. 2018). The loss weights of the config pick the recipe: pix2pix = log GAN + 100 L1;
pix2pixHD = least squares + 10 feature matching + 10 VGG perceptual (when a weights file is set).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.baselines.context import Context
from model.baselines.nets import build_discriminator, build_generator
from model.nets.blocks import one_hot
from model.training import losses
from model.training.steps import update


class GanRunner:
    """Conditional GAN on (image, one-hot mask) pairs, whole training tiles.

    Args:
        ctx: the run's context (config, device, samplers).
    """

    num_scales = 1

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        generator, discriminator = build_generator(ctx.model), build_discriminator(ctx.model)
        assert generator is not None and discriminator is not None
        self.generator: nn.Module = generator.to(ctx.device).train()
        self.discriminator: nn.Module = discriminator.to(ctx.device).train()
        self.opt_g = ctx.adam(self.generator, ctx.train.lr)
        self.opt_d = ctx.adam(self.discriminator, ctx.train.lr_d)

    def step(self, rank: int, step: int) -> dict[str, float]:
        """(1) generate, (2) update D, (3) update G."""
        x, labels = self.ctx.batch()  # (B, 3, T, T), (B, T, T)
        y = one_hot(labels, self.ctx.model.num_classes)  # (B, K, T, T)
        # 1. generator forward
        fake = self.generator(y)  # (B, 3, T, T)
        # 2. discriminator: real pairs up, generated pairs down
        kind = self.ctx.train.adversarial
        loss_d = 0.5 * (
            losses.adversarial(self.discriminator(x, y), True, kind, True)
            + losses.adversarial(self.discriminator(fake.detach(), y), False, kind, True)
        )
        logs = {"d": update(self.opt_d, loss_d)}
        # 3. generator: adversarial + weighted reconstruction terms
        terms = self._generator_terms(x, y, fake)
        weights = {
            "g_adv": 1.0,
            "g_l1": self.ctx.train.l1,
            "g_feat": self.ctx.train.feat,
            "g_perc": self.ctx.train.perc,
        }
        total = torch.stack([weights[k] * v for k, v in terms.items()]).sum()
        logs["g"] = update(self.opt_g, total)
        logs.update({k: float(v.item()) for k, v in terms.items()})
        return logs

    def _generator_terms(self, x: Tensor, y: Tensor, fake: Tensor) -> dict[str, Tensor]:
        cfg = self.ctx.train
        fake_out = self.discriminator(fake, y)
        terms = {"g_adv": losses.adversarial(fake_out, True, cfg.adversarial, False)}
        if cfg.l1:
            terms["g_l1"] = F.l1_loss(fake, x)
        if cfg.feat:
            with torch.no_grad():
                real_out = self.discriminator(x, y)
            terms["g_feat"] = losses.feature_matching(real_out, fake_out)
        if cfg.perc and self.ctx.perceptual is not None:
            terms["g_perc"] = self.ctx.perceptual(fake, x)
        return terms

    def end_scale(self, rank: int) -> None:
        """Single scale: nothing to freeze."""

    def networks(self) -> tuple[nn.Module | None, nn.Module | None]:
        """(generator, segmenter) to serve."""
        return self.generator, None
