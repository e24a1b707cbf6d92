"""One optimisation step at one scale: D, G and S updates (eq. 2, 6-8), as a table.

The loop in :mod:`model.training.train` prepares a :class:`ScaleBatch` (real crops, coarser
outputs, noise) and calls :meth:`ScaleStep.run`; this module only knows losses. The losses
come back as detached 0-d tensors on the training device, so a step never waits for the
device to read them (:func:`read_losses` does that, as often as the trainer logs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import LossConfig
from model.nets.blocks import one_hot
from model.training import losses
from model.training.augment import check_policies, diff_augment
from model.training.critic import mask_consistency

Losses = dict[str, Tensor]  # name -> detached 0-d tensor on the training device


@dataclass
class GeneratorBatch:
    """What D and G train on in every mode, cropped to one window.

    x, y: real image (B,3,h,w) and its soft one-hot mask (B,K,h,w); z: generator noise (B,3,h,w).
    up_fake, up_rec: the coarser generated / reconstructed image upsampled to (B,3,h,w);
    None at the coarsest scale (up_rec also where the scale has no reconstruction term).
    rec: whether this scale has a reconstruction term; z_rec: the noise of that pass (zeros
    or the fixed z*), scaled; None means zeros. rec_pooling: the term's pooling factor at
    this scale (``LossConfig.rec_pooling``; 1: full resolution).
    """

    x: Tensor
    y: Tensor
    z: Tensor
    up_fake: Tensor | None
    up_rec: Tensor | None
    rec: bool = True
    z_rec: Tensor | None = None
    rec_pooling: int = 1


@dataclass
class SegmenterBatch:
    """What S adds in joint and ssl mode, for the same crops.

    labels: hard labels (B,h,w); z_s: segmenter noise. s_prev: coarser S logits on the real
    image, syn_prev: on the coarser *generated* images, both upsampled (None at the coarsest
    scale; syn_prev also before S sees synthetic pairs).
    """

    labels: Tensor
    z_s: Tensor
    s_prev: Tensor | None
    syn_prev: Tensor | None


@dataclass
class UnlabeledBatch:
    """ssl only: unlabelled crops u (B_u,3,h,w), their coarser S logits u_prev (None at the
    coarsest scale), segmenter noise z_u and which pairs count as D positives (B_u,) bool."""

    u: Tensor
    u_prev: Tensor | None
    z_u: Tensor
    pseudo_mask: Tensor


@dataclass
class ScaleBatch:
    """One step at scale n: the G/D part always, S's part in joint and ssl, unlabelled in ssl."""

    gen: GeneratorBatch
    seg: SegmenterBatch | None = None
    unlabeled: UnlabeledBatch | None = None


@dataclass
class ScaleNets:
    """The three players of scale n and their optimisers (S parts None in generate mode), and
    the frozen mask critic when the mask-consistency term is on."""

    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    segmenter: nn.Module | None = None
    opt_s: torch.optim.Optimizer | None = None
    critic: nn.Module | None = None  # frozen mask critic (LossConfig.mask), trained on real pairs
    critic_floor: float = 0.0  # the mask term pays only the cross-entropy above this


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

    def run(self, nets: ScaleNets, b: ScaleBatch, use_synthetic: bool) -> Losses:
        """One step: (1) forward G and S, (2) update D, (3) update G, (4) update S."""
        g, s, u = b.gen, b.seg, b.unlabeled
        # 1. forward passes whose outputs every player needs
        with self.autocast():
            fake = nets.generator(g.y, g.z, g.up_fake)  # (B, 3, h, w)
            s_logits = nets.segmenter(g.x, s.s_prev, s.z_s) if nets.segmenter is not None and s is not None else None
            u_logits = nets.segmenter(u.u, u.u_prev, u.z_u) if nets.segmenter is not None and u is not None else None
        logs: Losses = {}
        # 2. discriminator: real (and pseudo-labelled) pairs up, G and S pairs down
        for _ in range(self.d_steps):
            logs.update(self._discriminator_step(nets, g, fake, s_logits, u, u_logits))
        # G's and S's losses reach their weights through D; D's own weight gradients there
        # were never read (D's next update starts from zero), so they are not computed
        with frozen(nets.discriminator):
            # 3. generator: adversarial + reconstruction + feature matching + mask critic + patches + perceptual
            logs.update(self._generator_step(nets, g, fake))
            # 4. segmenter: cross-entropy (+ synthetic pairs after the hold-out) + adversarial
            if s is not None and s_logits is not None:
                logs.update(self._segmenter_step(nets, g, s, fake, s_logits, u, u_logits, use_synthetic))
        return logs

    # ---- players ----------------------------------------------------------------
    def _disc(self, nets: ScaleNets, image: Tensor, mask: Tensor) -> losses.DiscOutput:
        image, mask = diff_augment([image, mask], self.augment)
        return nets.discriminator(image, mask)

    def _discriminator_step(self, nets: ScaleNets, g: GeneratorBatch, fake: Tensor, s_logits: Tensor | None,
                            u: UnlabeledBatch | None, u_logits: Tensor | None) -> Losses:
        kind = self.loss.adversarial
        logs: Losses = {}
        with self.autocast():
            real, real_mask = diff_augment([g.x, g.y], self.augment)
            if self.loss.r1 > 0:
                real = real.detach().requires_grad_(True)
            # (image, mask, judged real); each pair augmented with its own draw, in this order
            pairs = [(real, real_mask, True), self._pair(fake.detach(), g.y, False)]
            if s_logits is not None:
                pairs.append(self._pair(g.x, F.softmax(s_logits.detach().float(), 1), False))
            if u_logits is not None and u is not None:
                pairs += self._pseudo_pairs(u, u_logits)
                pairs.append(self._pair(u.u, F.softmax(u_logits.detach().float(), 1), False))
            if self.loss.r1 > 0:  # R1 differentiates the real pair's output twice: not the joint batch's
                outs = self._judge(nets, pairs[:1]) + self._judge(nets, pairs[1:])
            else:
                outs = self._judge(nets, pairs)
            positives = [losses.adversarial(out, True, kind, True) for out, p in zip(outs, pairs, strict=True) if p[2]]
            negatives = [losses.adversarial(out, False, kind, True) for out, p in zip(outs, pairs, strict=True)
                         if not p[2]]
            loss_d = 0.5 * (torch.stack(positives).mean() + torch.stack(negatives).mean())
            if self.loss.r1 > 0:
                r1 = losses.r1_penalty(outs[0], real)
                loss_d = loss_d + 0.5 * self.loss.r1 * r1
                logs["d_r1"] = r1.detach()
        apply(nets.opt_d, loss_d)
        return {"d": loss_d.detach(), **logs}

    @staticmethod
    def _judge(nets: ScaleNets, pairs: Sequence[tuple[Tensor, Tensor, bool]]) -> list[losses.DiscOutput]:
        """D's output on each (image, mask) pair: one call for all of them where D judges each
        sample on its own (``per_sample``: the same values, and a larger batch runs its convs
        more efficiently on a CPU), else one call per pair."""
        if not getattr(nets.discriminator, "per_sample", False) or len(pairs) < 2:
            return [nets.discriminator(image, mask) for image, mask, _ in pairs]
        joint = nets.discriminator(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]))
        outs, start = [], 0
        for image, _, _ in pairs:
            n = image.shape[0]
            outs.append([(logits[start:start + n], [f[start:start + n] for f in feats]) for logits, feats in joint])
            start += n
        return outs

    def _pseudo_pairs(self, u: UnlabeledBatch, u_logits: Tensor) -> list[tuple[Tensor, Tensor, bool]]:
        """A random share of S-labelled unlabelled pairs counts as real (Li et al. 2019)."""
        if not bool(u.pseudo_mask.any()):
            return []
        k = u_logits.shape[1]
        pseudo = one_hot(u_logits.detach().argmax(1), k)[u.pseudo_mask]
        return [self._pair(u.u[u.pseudo_mask], pseudo, True)]

    def _pair(self, image: Tensor, mask: Tensor, real: bool) -> tuple[Tensor, Tensor, bool]:
        """An (image, mask) pair for D with its own DiffAugment draw, and whether it counts as real."""
        image, mask = diff_augment([image, mask], self.augment)
        return image, mask, real

    def _generator_step(self, nets: ScaleNets, g: GeneratorBatch, fake: Tensor) -> Losses:
        w = self.loss
        with self.autocast():
            # one augmentation for both pairs: feature matching compares the same places
            fake_a, real_a, y_a = diff_augment([fake, g.x, g.y], self.augment)
            fake_out = nets.discriminator(fake_a, y_a)
            with torch.no_grad():
                real_out = nets.discriminator(real_a, y_a)
            adv = losses.adversarial(fake_out, True, w.adversarial, False)
            feat = losses.feature_matching(real_out, fake_out)
            total = adv + w.feat * feat
            logs = {"g_adv": adv.detach(), "g_feat": feat.detach()}
            if g.rec:
                z_rec = torch.zeros_like(g.z) if g.z_rec is None else g.z_rec  # fixed noise map (eq. 3)
                rec_img = nets.generator(g.y, z_rec, g.up_rec)
                rec = losses.reconstruction(rec_img.float(), g.x.float(), g.rec_pooling)
                total = total + w.rec * rec
                logs["g_rec"] = rec.detach()
            if w.mask > 0:
                if nets.critic is None:
                    raise ValueError("loss.mask > 0 needs a mask critic for the scale")
                mask = mask_consistency(nets.critic(fake), g.y)
                total = total + w.mask * F.relu(mask - nets.critic_floor)
                logs["g_mask"] = mask.detach()
            if w.diversity > 0:  # at every scale: the coarsest one's noise is all that varies it
                ratio = losses.mode_seeking_ratio(nets.generator, g.y, g.z, g.up_fake, fake)
                total = total - w.diversity * ratio.clamp(max=w.diversity_cap)
                logs["g_div"] = ratio.detach()
            if w.patch > 0:
                patch = losses.patch_distribution(fake, g.x, g.y.argmax(1), w.patch_size, w.patch_projections)
                total = total + w.patch * patch
                logs["g_patch"] = patch.detach()
            if self.perceptual is not None:
                perc = self.perceptual(fake.float(), g.x.float())
                total = total + w.perc * perc
                logs["g_perc"] = perc.detach()
        apply(nets.opt_g, total)
        logs["g"] = total.detach()
        return logs

    def _segmenter_step(self, nets: ScaleNets, g: GeneratorBatch, s: SegmenterBatch, fake: Tensor,
                        s_logits: Tensor, u: UnlabeledBatch | None, u_logits: Tensor | None,
                        use_synthetic: bool) -> Losses:
        w = self.loss
        assert nets.segmenter is not None and nets.opt_s is not None
        with self.autocast():
            ce = losses.cross_entropy(s_logits.float(), s.labels)
            adv = losses.adversarial(self._disc(nets, g.x, F.softmax(s_logits.float(), 1)), True,
                                     w.adversarial, False)
            total = w.ce * ce + w.adv_s * adv
            logs = {"s_ce": ce.detach(), "s_adv": adv.detach()}
            if use_synthetic:
                syn = nets.segmenter(fake.detach(), s.syn_prev, s.z_s)
                ce_syn = losses.cross_entropy(syn.float(), s.labels)
                total = total + w.ce_synthetic * ce_syn
                logs["s_ce_syn"] = ce_syn.detach()
            if u_logits is not None and u is not None:
                u_out = self._disc(nets, u.u, F.softmax(u_logits.float(), 1))
                adv_u = losses.adversarial(u_out, True, w.adversarial, False)
                total = total + w.adv_s * adv_u
                logs["s_adv_u"] = adv_u.detach()
        apply(nets.opt_s, total)
        logs["s"] = total.detach()
        return logs


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters need no gradient inside (gradients still flow through it to
    its inputs); those that needed one need it again after."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def apply(opt: torch.optim.Optimizer, loss: Tensor) -> None:
    """Backward and step without a host sync: a non-finite loss is caught by
    :func:`read_losses` when the trainer reads the losses, before its next checkpoint."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def update(opt: torch.optim.Optimizer, loss: Tensor) -> float:
    """Backward and step; a non-finite loss is an error (lower the learning rate). Reads the
    loss (a host sync): for the baselines' loops, which log every step."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()}; lower the learning rates")
    apply(opt, loss)
    return float(loss.item())


def read_losses(steps: Sequence[Losses]) -> dict[str, float]:
    """The mean of each loss over ``steps`` (one device read for all); a non-finite loss is an
    error that names it.

    Args:
        steps: the losses of consecutive steps, as :meth:`ScaleStep.run` returns them.
    """
    if not steps:
        return {}
    names = sorted({k for logs in steps for k in logs})
    means = []
    for k in names:
        values = [logs[k].float() for logs in steps if k in logs]
        means.append(torch.stack(values).mean())
    read = torch.stack(means).cpu().tolist()  # the one host sync
    out = dict(zip(names, read, strict=True))
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"loss {', '.join(bad)} became non-finite ({', '.join(str(out[k]) for k in bad)}); "
                                 "lower the learning rates")
    return out
