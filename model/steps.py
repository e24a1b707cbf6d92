"""One optimisation step at one scale: D, G and S updates (eq. 2, 6-8), as a table.

The loop in :mod:`model.train` prepares a :class:`ScaleBatch` (real crops, coarser
outputs, noise) and calls :meth:`ScaleStep.run`; this module only knows losses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model import losses
from model.augment import check_policies, diff_augment
from model.config import LossConfig
from model.nets.blocks import one_hot


@dataclass
class ScaleBatch:
    """Tensors of one step at scale n, all cropped to the same window.

    x, y, labels: real image (B,3,h,w), soft one-hot mask (B,K,h,w), hard labels (B,h,w).
    up_fake, up_rec: coarser generated / reconstructed image upsampled to (B,3,h,w);
    up_rec is None when this scale has no reconstruction term.
    z: generator noise (B,3,h,w), scaled. z_rec: noise of the reconstruction pass (zeros or
    the fixed z*), scaled; None without a reconstruction term. s_prev: coarser S logits on the real image, upsampled.
    syn_prev: coarser S logits on the coarser *generated* images, upsampled.
    u, u_prev: unlabelled images and their coarser S logits (ssl only).
    z_s, z_u: segmenter noise for the real and unlabelled images.
    """

    x: Tensor
    y: Tensor
    labels: Tensor
    up_fake: Tensor | None
    up_rec: Tensor | None
    z: Tensor
    z_rec: Tensor | None = None
    rec: bool = True
    s_prev: Tensor | None = None
    syn_prev: Tensor | None = None
    z_s: Tensor | None = None
    u: Tensor | None = None
    u_prev: Tensor | None = None
    z_u: Tensor | None = None
    pseudo_mask: Tensor | None = None  # (B_u,) bool: unlabelled pairs used as D positives


@dataclass
class ScaleNets:
    """The three players of scale n and their optimisers (S parts None in generate mode)."""

    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    segmenter: nn.Module | None = None
    opt_s: torch.optim.Optimizer | None = None


class ScaleStep:
    """D, G, S updates of Algorithms 1-3 with the weights of a :class:`LossConfig`.

    Args:
        loss: loss weights and adversarial kind.
        perceptual: VGG perceptual loss module, or None when no weights are configured.
        autocast: context factory for mixed precision (a null context on the CPU).
        d_steps: discriminator updates per step (each with a fresh augmentation).
        augment: DiffAugment policies for every pair D sees.
    """

    def __init__(
        self,
        loss: LossConfig,
        perceptual: nn.Module | None,
        autocast: Callable[[], AbstractContextManager],
        d_steps: int = 1,
        augment: Sequence[str] = (),
    ) -> None:
        if d_steps < 1:
            raise ValueError(f"d_steps must be >= 1, got {d_steps}")
        check_policies(augment)
        self.loss = loss
        self.perceptual = perceptual
        self.autocast = autocast
        self.d_steps = d_steps
        self.augment = tuple(augment)

    def run(self, nets: ScaleNets, b: ScaleBatch, use_synthetic: bool) -> dict[str, float]:
        """One step: (1) forward G and S, (2) update D, (3) update G, (4) update S."""
        # 1. forward passes whose outputs every player needs
        with self.autocast():
            fake = nets.generator(b.y, b.z, b.up_fake)  # (B, 3, h, w)
            s_logits = self._segment(nets, b.x, b.s_prev, b.z_s)
            u_logits = self._segment(nets, b.u, b.u_prev, b.z_u) if b.u is not None else None
        logs = {}
        # 2. discriminator: real (and pseudo-labelled) pairs up, G and S pairs down
        for _ in range(self.d_steps):
            logs.update(self._discriminator_step(nets, b, fake, s_logits, u_logits))
        # 3. generator: adversarial + reconstruction + feature matching + perceptual
        logs.update(self._generator_step(nets, b, fake))
        # 4. segmenter: cross-entropy (+ synthetic pairs after the hold-out) + adversarial
        if nets.segmenter is not None and s_logits is not None:
            logs.update(self._segmenter_step(nets, b, fake, s_logits, u_logits, use_synthetic))
        return logs

    # ---- players ----------------------------------------------------------------
    def _segment(self, nets: ScaleNets, x: Tensor | None, prev: Tensor | None, z: Tensor | None) -> Tensor | None:
        if nets.segmenter is None or x is None:
            return None
        return nets.segmenter(x, prev, z)

    def _disc(self, nets: ScaleNets, image: Tensor, mask: Tensor) -> losses.DiscOutput:
        image, mask = diff_augment([image, mask], self.augment)
        return nets.discriminator(image, mask)

    def _discriminator_step(self, nets: ScaleNets, b: ScaleBatch, fake: Tensor,
                            s_logits: Tensor | None, u_logits: Tensor | None) -> dict[str, float]:
        kind = self.loss.adversarial
        with self.autocast():
            positives = [losses.adversarial(self._disc(nets, b.x, b.y), True, kind, True)]
            negatives = [losses.adversarial(self._disc(nets, fake.detach(), b.y), False, kind, True)]
            if s_logits is not None:
                s_pair = F.softmax(s_logits.detach().float(), 1)
                negatives.append(losses.adversarial(self._disc(nets, b.x, s_pair), False, kind, True))
            if u_logits is not None and b.u is not None:
                positives += self._pseudo_positives(nets, b, u_logits)
                u_pair = F.softmax(u_logits.detach().float(), 1)
                negatives.append(losses.adversarial(self._disc(nets, b.u, u_pair), False, kind, True))
            loss_d = 0.5 * (torch.stack(positives).mean() + torch.stack(negatives).mean())
        _update(nets.opt_d, loss_d)
        return {"d": loss_d.item()}

    def _pseudo_positives(self, nets: ScaleNets, b: ScaleBatch, u_logits: Tensor) -> list[Tensor]:
        """A random share of S-labelled unlabelled pairs counts as real (Li et al. 2019)."""
        if b.pseudo_mask is None or b.u is None or not bool(b.pseudo_mask.any()):
            return []
        k = u_logits.shape[1]
        pseudo = one_hot(u_logits.detach().argmax(1), k)[b.pseudo_mask]
        out = self._disc(nets, b.u[b.pseudo_mask], pseudo)
        return [losses.adversarial(out, True, self.loss.adversarial, True)]

    def _generator_step(self, nets: ScaleNets, b: ScaleBatch, fake: Tensor) -> dict[str, float]:
        w = self.loss
        with self.autocast():
            # one augmentation for both pairs: feature matching compares the same places
            fake_a, real_a, y_a = diff_augment([fake, b.x, b.y], self.augment)
            fake_out = nets.discriminator(fake_a, y_a)
            with torch.no_grad():
                real_out = nets.discriminator(real_a, y_a)
            adv = losses.adversarial(fake_out, True, w.adversarial, False)
            feat = losses.feature_matching(real_out, fake_out)
            total = adv + w.feat * feat
            logs = {"g_adv": adv.item(), "g_feat": feat.item()}
            if b.rec:
                z_rec = torch.zeros_like(b.z) if b.z_rec is None else b.z_rec  # fixed noise map (eq. 3)
                rec_img = nets.generator(b.y, z_rec, b.up_rec)
                rec = losses.reconstruction(rec_img.float(), b.x.float(), w.rec_downsample)
                total = total + w.rec * rec
                logs["g_rec"] = rec.item()
            if self.perceptual is not None:
                perc = self.perceptual(fake.float(), b.x.float())
                total = total + w.perc * perc
                logs["g_perc"] = perc.item()
        _update(nets.opt_g, total)
        logs["g"] = total.item()
        return logs

    def _segmenter_step(self, nets: ScaleNets, b: ScaleBatch, fake: Tensor, s_logits: Tensor,
                        u_logits: Tensor | None, use_synthetic: bool) -> dict[str, float]:
        w = self.loss
        assert nets.segmenter is not None and nets.opt_s is not None
        with self.autocast():
            ce = losses.cross_entropy(s_logits.float(), b.labels)
            adv = losses.adversarial(self._disc(nets, b.x, F.softmax(s_logits.float(), 1)), True,
                                     w.adversarial, False)
            total = w.ce * ce + w.adv_s * adv
            logs = {"s_ce": ce.item(), "s_adv": adv.item()}
            if use_synthetic:
                syn = nets.segmenter(fake.detach(), b.syn_prev, b.z_s)
                ce_syn = losses.cross_entropy(syn.float(), b.labels)
                total = total + w.ce_synthetic * ce_syn
                logs["s_ce_syn"] = ce_syn.item()
            if u_logits is not None and b.u is not None:
                u_out = self._disc(nets, b.u, F.softmax(u_logits.float(), 1))
                adv_u = losses.adversarial(u_out, True, w.adversarial, False)
                total = total + w.adv_s * adv_u
                logs["s_adv_u"] = adv_u.item()
        _update(nets.opt_s, total)
        logs["s"] = total.item()
        return logs


def _update(opt: torch.optim.Optimizer, loss: Tensor) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()}; lower the learning rates")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
