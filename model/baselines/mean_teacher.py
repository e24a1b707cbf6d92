"""Consistency-based semi-supervised segmentation, eq. 9 of the paper (mean teacher):

    min_theta sum_labelled L_S(f(x; theta))
              + lambda sum_all L_C(f(x; theta', xi'), f(x; theta, xi))

L_S is cross-entropy, L_C the MSE between the softmax maps of the student (theta, noise xi)
and the teacher (theta' = EMA of theta, noise xi'); the noise is Gaussian on the input.
Inductive: the unlabelled pool is the unlabelled training images; transductive adds the
evaluation images. The teacher is served (it is the better model in Tarvainen and Valpola 2017).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from model.baselines.config import MeanTeacherConfig
from model.baselines.context import Context
from model.baselines.nets import build_segmenter
from model.training import losses
from model.training.steps import update


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """teacher = alpha * teacher + (1 - alpha) * student for parameters; buffers are copied.

    Args:
        teacher: updated in place.
        student: the trained network (same architecture).
        alpha: EMA decay in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {alpha}")
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)
    for tb, sb in zip(teacher.buffers(), student.buffers(), strict=True):
        tb.copy_(sb)


def consistency_weight(step: int, cfg: MeanTeacherConfig) -> float:
    """lambda(step): sigmoid-shaped ramp-up exp(-5 (1 - t)^2), t = step / rampup_steps."""
    if cfg.rampup_steps <= 0:
        return cfg.consistency
    t = min(step / cfg.rampup_steps, 1.0)
    return cfg.consistency * math.exp(-5.0 * (1.0 - t) ** 2)


def ema_decay(step: int, cfg: MeanTeacherConfig) -> float:
    """The configured decay, lowered early on (1 - 1/(step + 1)) so the teacher warms up fast."""
    return min(1.0 - 1.0 / (step + 1), cfg.ema_decay)


class MeanTeacherRunner:
    """Student m-FC-DenseNet trained on CE + consistency; teacher follows by EMA.

    Args:
        ctx: the run's context (needs an unlabelled sampler).
    """

    num_scales = 1

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        student = build_segmenter(ctx.model)
        assert student is not None
        self.student: nn.Module = student.to(ctx.device).train()
        self.teacher: nn.Module = copy.deepcopy(self.student).requires_grad_(False)
        self.opt = ctx.adam(self.student, ctx.train.lr)

    def step(self, rank: int, step: int) -> dict[str, float]:
        """(1) perturb labelled + unlabelled inputs twice, (2) CE + lambda consistency, (3) EMA."""
        mt = self.ctx.train.mean_teacher
        x_l, labels = self.ctx.batch()  # (B, 3, T, T), (B, T, T)
        x = torch.cat([x_l, self.ctx.unlabeled_batch()])  # (2B, 3, T, T)
        # 1. two independent input perturbations xi (student) and xi' (teacher)
        student_logits = self.student(x + mt.input_noise * self.ctx.randn_like(x))
        with torch.no_grad():
            teacher_logits = self.teacher(x + mt.input_noise * self.ctx.randn_like(x))
        # 2. supervised CE on the labelled part, consistency on everything
        ce = losses.cross_entropy(student_logits[: len(x_l)], labels)
        cons = F.mse_loss(F.softmax(student_logits, 1), F.softmax(teacher_logits, 1))
        lam = consistency_weight(step, mt)
        total = update(self.opt, ce + lam * cons)
        # 3. the teacher follows the student
        ema_update(self.teacher, self.student, ema_decay(step, mt))
        return {"s": total, "s_ce": float(ce.item()), "s_cons": float(cons.item()), "lambda": lam}

    def end_scale(self, rank: int) -> None:
        """Single scale: nothing to freeze."""

    def networks(self) -> tuple[nn.Module | None, nn.Module | None]:
        return None, self.teacher
