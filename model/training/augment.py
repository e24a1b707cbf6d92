"""DiffAugment (Zhao et al. 2020) for the discriminator's (image, mask) pairs.

Both halves of a pair get the same transform, so D still judges whether the image fits
its mask. Real and generated pairs are augmented alike (each draw independent), and the
generator's gradient flows through the transform. Draws come from torch's global RNG,
which the training state saves, so resumes stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

POLICIES = ("translation", "cutout")


def check_policies(policies: Sequence[str]) -> None:
    """Raise a ValueError naming an unknown policy."""
    for p in policies:
        if p not in POLICIES:
            raise ValueError(f"unknown augment policy {p!r}; choose from {', '.join(POLICIES)}")


def diff_augment(tensors: Sequence[Tensor], policies: Sequence[str]) -> list[Tensor]:
    """Apply the policies in order, with the same draw, to tensors (B, C_i, H, W) alike.

    E.g. an image and its mask; or a generated image, the real one and their mask, so
    that feature matching compares features at the same places.
    """
    if not policies:
        return list(tensors)
    check_policies(policies)
    x = torch.cat(list(tensors), dim=1)  # (B, sum C_i, H, W)
    for p in policies:
        x = translate(x) if p == "translation" else cutout(x)
    return list(torch.split(x, [t.shape[1] for t in tensors], dim=1))


def translate(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each sample by up to ``ratio`` of its side, filling with zeros."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b,), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b,), device=x.device)
    padded = F.pad(x, (sx, sx, sy, sy))  # (B, C, H + 2 sy, W + 2 sx)
    rows = (torch.arange(h, device=x.device)[None] - dy[:, None] + sy)  # (B, H)
    cols = (torch.arange(w, device=x.device)[None] - dx[:, None] + sx)  # (B, W)
    idx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one square of ``ratio`` times the side per sample, at a random place."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(-(ch // 2), h - ch // 2 + 1, (b,), device=x.device)[:, None, None]
    left = torch.randint(-(cw // 2), w - cw // 2 + 1, (b,), device=x.device)[:, None, None]
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # (B, H, W)
    return x * (~inside)[:, None].to(x.dtype)
