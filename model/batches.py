"""Training batches for one scale: real crops plus what the frozen coarser scales produce.

Finer scales train on random crops (``crop_size``) cut at the same place from every
tensor of the scale, so memory does not grow with the tile size. The frozen coarser
scales run under ``no_grad`` on a region around the crop: ``crop_context`` full-resolution
pixels of context (``coarse_context="fixed"``), at least their receptive field
(``"receptive"``, so a fine scale trains on what inference gives it), or the whole tile
(``"tile"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.data import image_pyramid, mask_pyramid, to_tensor, to_uint8
from model.report import image_grid
from model.steps import ScaleBatch

if TYPE_CHECKING:
    from model.train import Trainer

Window = tuple[int, int, int, int]  # top, left, height, width


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def _crop(x: Tensor | None, w: Window) -> Tensor | None:
    if x is None:
        return None
    top, left, h, wd = w
    return x[..., top:top + h, left:left + wd]


class BatchMaker:
    """Builds :class:`ScaleBatch` objects for a :class:`Trainer` (reads its nets and RNGs)."""

    def __init__(self, trainer: Trainer) -> None:
        self.t = trainer

    # ---- random draws (all from the trainer's CPU generator, so resumes are exact) ----
    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(*shape, generator=self.t.gen).to(self.t.device)

    def _window(self, h: int, w: int, centred: bool = False) -> Window:
        c = self.t.cfg.crop_size
        if h <= c and w <= c:
            return 0, 0, h, w
        ch, cw = min(c, h), min(c, w)
        if centred:
            return (h - ch) // 2, (w - cw) // 2, ch, cw
        top = int(torch.randint(0, h - ch + 1, (1,), generator=self.t.gen))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=self.t.gen))
        return top, left, ch, cw

    def _noise_maps(self, ys: list[Tensor], stop_at: int, noisy: bool = True) -> list[Tensor | None]:
        zs: list[Tensor | None] = []
        for m, y in enumerate(ys):
            if m < stop_at:
                zs.append(None)
                continue
            b, _, h, w = y.shape
            shape = (b, self.t.generator.noise_channels(m), h, w)
            # unit scale: G applies noise_amp; without noise, the reconstruction map of eq. 3
            zs.append(self._randn(*shape) if noisy else self.rec_noise(m, shape))
        return zs

    def rec_noise(self, m: int, shape: tuple[int, ...]) -> Tensor:
        """Unit-scale noise of the reconstruction pass at scale m: zeros (eq. 3) or SinGAN's
        fixed z*, the same draw for the same shape at every step (its own seeded stream)."""
        if self.t.cfg.loss.rec_noise == "zeros":
            return torch.zeros(shape, device=self.t.device)
        if self.t.cfg.loss.rec_noise != "fixed":
            raise ValueError(f"unknown rec_noise {self.t.cfg.loss.rec_noise!r}; choose zeros or fixed")
        gen = torch.Generator().manual_seed(self.t.cfg.seed * 1009 + 7919 + m)
        return torch.randn(shape, generator=gen).to(self.t.device)

    def context(self, n: int) -> int:
        """Full-resolution pixels of context around a scale-n crop for the coarser scales."""
        cfg = self.t.cfg
        if cfg.coarse_context == "fixed":
            return cfg.crop_context
        if cfg.coarse_context != "receptive":
            raise ValueError(f"unknown coarse_context {cfg.coarse_context!r}; choose fixed, receptive or tile")
        # each coarser scale m adds (blocks + 1) 3x3 convs, i.e. that many of its pixels (2**m at n = 0)
        reach = sum((self.t.model_cfg.generator.num_blocks + 2) * 2**m for m in range(n + 1, self.t.num_scales))
        return max(cfg.crop_context, reach)

    def _region(self, n: int, *tensors: Tensor | None) -> tuple[list[Tensor | None], bool]:
        """Cut a random region of crop * 2**n + 2 * context pixels (aligned to the pyramid)
        from full-resolution tiles; True when cut, so the crop is then its centre."""
        cfg, f = self.t.cfg, self.t.model_cfg.factor
        first = next(x for x in tensors if x is not None)
        h, w = first.shape[-2:]
        if cfg.coarse_context == "tile":
            return list(tensors), False
        side = -(-(cfg.crop_size * 2**n + 2 * self.context(n)) // f) * f
        if side >= h or side >= w:
            return list(tensors), False
        top = f * int(torch.randint(0, (h - side) // f + 1, (1,), generator=self.t.gen))
        left = f * int(torch.randint(0, (w - side) // f + 1, (1,), generator=self.t.gen))
        return [None if x is None else x[..., top:top + side, left:left + side] for x in tensors], True

    # ---- coarser scales (frozen) ----------------------------------------------------
    @torch.no_grad()
    def _coarse_images(self, n: int, ys: list[Tensor], noisy: bool) -> list[Tensor | None] | None:
        if n == self.t.num_scales - 1:
            return None
        zs = self._noise_maps(ys, n + 1, noisy)
        with self.t._autocast():
            out = self.t.generator(ys, zs, stop_at=n + 1)
        return [o.float() if o is not None else None for o in out]

    @torch.no_grad()
    def _coarse_logits(self, n: int, xs: list[Tensor | None]) -> Tensor | None:
        if n == self.t.num_scales - 1:
            return None
        with self.t._autocast():
            logits = self.t.segmenter(xs, None, stop_at=n + 1)
        return logits[n + 1].float()

    # ---- public -----------------------------------------------------------------------
    def make(self, n: int, use_synthetic: bool = False) -> ScaleBatch:
        """A batch for scale n: sample tiles, build pyramids, run coarser scales, crop.

        ``use_synthetic``: also run the coarser segmenters on the generated images (S sees
        synthetic pairs once the hold-out is over).
        """
        t, cfg = self.t, self.t.cfg
        joint = cfg.mode != "generate"
        bs = cfg.batch_size(t.rank)
        x, labels = t.sampler.sample(bs)  # (B, 3, T, T), (B, T, T)
        (x, labels), centred = self._region(n, x, labels)  # (B, 3, R, R), (B, R, R)
        x, labels = x.to(t.device, memory_format=torch.channels_last), labels.to(t.device)
        xs = image_pyramid(x, t.num_scales)
        ys, labs = mask_pyramid(labels, t.model_cfg.num_classes, t.num_scales)
        use_rec = cfg.loss.rec_active(n, t.num_scales)
        fake = self._coarse_images(n, ys, noisy=True)
        rec = self._coarse_images(n, ys, noisy=False) if use_rec else None
        up_fake = _up(fake[n + 1], xs[n]) if fake else None
        up_rec = _up(rec[n + 1], xs[n]) if rec else None
        s_prev = syn_prev = None
        if joint and fake is not None:
            s_prev = _up(self._coarse_logits(n, xs), xs[n])
            if use_synthetic:
                syn_prev = _up(self._coarse_logits(n, fake), xs[n])
        w = self._window(*xs[n].shape[-2:], centred)
        crop_x = _crop(xs[n], w)
        amp = float(t.generator.noise_amp[n])
        z_shape = (crop_x.shape[0], t.generator.noise_channels(n), *crop_x.shape[-2:])
        batch = ScaleBatch(
            x=crop_x, y=_crop(ys[n], w), labels=_crop(labs[n], w),
            up_fake=_crop(up_fake, w), up_rec=_crop(up_rec, w),
            z=amp * self._randn(*z_shape),
            z_rec=amp * self.rec_noise(n, z_shape) if use_rec else None, rec=use_rec,
            s_prev=_crop(s_prev, w), syn_prev=_crop(syn_prev, w),
            z_s=self._seg_noise(crop_x) if joint else None,
        )
        if cfg.mode == "ssl":
            self._add_unlabeled(batch, n, bs)
        return batch

    def _seg_noise(self, x: Tensor) -> Tensor:
        cs = self.t.model_cfg.segmenter.noise_channels
        std = self.t.model_cfg.segmenter.noise_std
        return std * self._randn(x.shape[0], cs, *x.shape[-2:])

    def _add_unlabeled(self, batch: ScaleBatch, n: int, bs: int) -> None:
        assert self.t.unlabeled_sampler is not None
        u, _ = self.t.unlabeled_sampler.sample(bs)
        (u,), centred = self._region(n, u)
        us = image_pyramid(u.to(self.t.device, memory_format=torch.channels_last), self.t.num_scales)
        prev = self._coarse_logits(n, us)
        u_prev = _up(prev, us[n]) if prev is not None else None
        w = self._window(*us[n].shape[-2:], centred)
        batch.u, batch.u_prev = _crop(us[n], w), _crop(u_prev, w)
        batch.z_u = self._seg_noise(batch.u)
        share = self.t.cfg.pseudo_positive_fraction
        batch.pseudo_mask = (torch.rand(bs, generator=self.t.gen) < share).to(self.t.device)

    @torch.no_grad()
    def noise_amplitude(self, n: int) -> float:
        """Coarsest: ``noise_amp_init``; finer: factor x RMSE of the coarser reconstruction."""
        t, cfg = self.t, self.t.cfg
        if n == t.num_scales - 1:
            return cfg.noise_amp_init
        x, labels = t.sampler.sample(cfg.batch_size(t.rank))
        x, labels = x.to(t.device), labels.to(t.device)
        xs = image_pyramid(x, t.num_scales)
        ys, _ = mask_pyramid(labels, t.model_cfg.num_classes, t.num_scales)
        rec = self._coarse_images(n, ys, noisy=False)
        assert rec is not None
        rmse = torch.sqrt(F.mse_loss(_up(rec[n + 1], xs[n]), xs[n]))
        return cfg.noise_amp_factor * float(rmse)

    @torch.no_grad()
    def sample_grid(self, n: int, tiles: int = 2, variants: int = 3) -> np.ndarray:
        """Rows of: mask | generated variants | real, at scale n, for fixed tiles."""
        t = self.t
        size = t.cfg.tile_size
        rows = []
        gen = torch.Generator().manual_seed(1234)
        for image, mask in list(zip(t.labeled.images, t.labeled.masks, strict=True))[:tiles]:
            img, msk = _center(image, size), _center(mask, size)
            x = to_tensor(img)[None].to(t.device)
            labels = torch.from_numpy(msk)[None].long().to(t.device)
            xs = image_pyramid(x, t.num_scales)
            ys, labs = mask_pyramid(labels, t.model_cfg.num_classes, t.num_scales)
            ys = [y.expand(variants, -1, -1, -1) for y in ys]
            zs = [None if m < n else torch.randn(variants, t.generator.noise_channels(m), *y.shape[-2:],
                                generator=gen).to(t.device) for m, y in enumerate(ys)]
            out = t.generator(ys, zs, stop_at=n)[n]
            row = [t.dataset.classes.to_color(labs[n][0].cpu().numpy())]
            row += list(to_uint8(out.float().cpu()))
            row.append(to_uint8(xs[n][0].cpu()))
            rows.append(row)
        return image_grid(rows)


def _center(a: np.ndarray, size: int) -> np.ndarray:
    """Centre crop (reflect-padding when smaller) to size x size."""
    h, w = a.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        pad = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad, mode="reflect")
        h, w = a.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return a[top:top + size, left:left + size]
