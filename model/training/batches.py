"""Training batches for one scale: real crops plus what the frozen coarser scales produce.

Finer scales train on random crops (``crop_size``) cut at the same place from every
tensor of the scale, so memory does not grow with the tile size. The frozen coarser
scales run under ``no_grad`` on a region around the crop: ``crop_context`` full-resolution
pixels of context (``coarse_context="fixed"``), at least their receptive field
(``"receptive"``, so a fine scale trains on what inference gives it), or the whole tile
(``"tile"``). They compute only what the crop needs, with the same values: the crop window
is drawn right after their noise (before they run), then the coarser generators run scale
by scale on the window's box grown by each Phi's reach, and the coarser segmenter's up
path on the boxes the window needs (its down path and bottleneck read the whole region).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.config import ModelConfig, TrainConfig
from model.nets.blocks import crop, cut_box, half_box, upsample
from model.nets.generator import PyramidGenerator
from model.nets.segmenter import PyramidSegmenter
from model.report import image_grid
from model.tensors import (
    image_pyramid,
    mask_pyramid,
    mask_pyramid_from,
    noise_maps,
    pad_array,
    to_tensor,
    to_uint8,
)
from model.training.data import Dataset, TileSampler, Window, random_window
from model.training.steps import GeneratorBatch, ScaleBatch, SegmenterBatch, UnlabeledBatch


def _up(x: Tensor, like: Tensor) -> Tensor:
    return upsample(x, like.shape[-2:])


def _cut(x: Tensor | None, w: Window) -> Tensor | None:
    return None if x is None else crop(x, (w[2], w[3]), at=(w[0], w[1]))


def _source_box(w: Window, coarse: Tensor, like: Tensor) -> Window | None:
    """The box of ``coarse`` whose 2x upsampling covers the window ``w`` of ``like``; None
    when ``like`` is not exactly twice ``coarse``."""
    (hc, wc), (h, ww) = coarse.shape[-2:], like.shape[-2:]
    if (h, ww) != (2 * hc, 2 * wc):
        return None
    return half_box(w, (int(hc), int(wc)))


def _up_cut(x: Tensor, box: Window, w: Window) -> Tensor:
    """Window ``w`` of the 2x upsampling of ``x``, the box ``box`` of a coarser map."""
    return cut_box(upsample(x, (2 * box[2], 2 * box[3])), w, origin=(2 * box[0], 2 * box[1]))


class TrainingRun(Protocol):
    """What the batch maker reads from the trainer: configs, nets, samplers and the RNG."""

    cfg: TrainConfig
    model_cfg: ModelConfig
    device: torch.device
    gen: torch.Generator
    generator: PyramidGenerator
    segmenter: PyramidSegmenter
    sampler: TileSampler
    unlabeled_sampler: TileSampler | None
    labeled: Dataset
    dataset: Dataset
    rank: int

    @property
    def num_scales(self) -> int: ...

    def autocast(self) -> AbstractContextManager: ...


class BatchMaker:
    """Builds :class:`ScaleBatch` objects for a training run (reads its nets and RNGs)."""

    #: Run the frozen coarser scales only where the crop needs them (the same values as on
    #: the whole region, which tests compare by turning this off).
    boxes: bool = True

    def __init__(self, trainer: TrainingRun) -> None:
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

    def _noise_maps(self, ys: list[Tensor | None], stop_at: int, noisy: bool = True) -> list[Tensor | None]:
        b = next(y for y in ys if y is not None).shape[0]
        channels = [self.t.generator.noise_channels(m) for m in range(len(ys))]
        sizes = [(0, 0) if y is None else (y.shape[-2], y.shape[-1]) for y in ys]  # None: below stop_at
        if not noisy:  # the reconstruction noise maps (eq. 3: zeros; or SinGAN's fixed z*)
            return [None if m < stop_at else self.rec_noise(m, (b, channels[m], *sizes[m]))
                    for m in range(len(ys))]
        zs = noise_maps(self.t.gen, b, channels, sizes, stop_at)
        return [None if z is None else z.to(self.t.device) for z in zs]  # unit scale: G applies noise_amp

    def rec_noise(self, m: int, shape: tuple[int, ...]) -> Tensor:
        """Unit-scale noise of the reconstruction pass at scale m: zeros (eq. 3) or SinGAN's
        fixed z*, the same draw for the same shape at every step (its own seeded stream)."""
        kind = self.t.cfg.loss.rec_noise
        if kind == "zeros":
            return torch.zeros(shape, device=self.t.device)
        if kind != "fixed":
            raise ValueError(f"unknown rec_noise {kind!r}; choose zeros or fixed")
        gen = torch.Generator().manual_seed(self.t.cfg.seed * 1009 + 7919 + m)
        return torch.randn(shape, generator=gen).to(self.t.device)

    def context(self, n: int) -> int:
        """Full-resolution pixels of context around a scale-n crop for the coarser scales."""
        cfg = self.t.cfg
        if cfg.coarse_context == "fixed":
            return cfg.crop_context
        if cfg.coarse_context != "receptive":
            raise ValueError(f"unknown coarse_context {cfg.coarse_context!r}; choose fixed, receptive or tile")
        # each coarser scale m adds its Phi's reach and an upsampling: that many of its
        # pixels, 2**m full-resolution pixels each
        gen = self.t.model_cfg.generator
        reach = sum((gen.reach(m) + 1) * 2**m for m in range(n + 1, self.t.num_scales))
        return max(cfg.crop_context, reach)

    def _region(self, n: int) -> tuple[Window | None, bool]:
        """A random region of crop * 2**n + 2 * context pixels (aligned to the pyramid) of a
        tile, or None for the whole tile; True when cut, so the crop is then its centre."""
        cfg, f, side_t = self.t.cfg, self.t.model_cfg.factor, self.t.cfg.tile_size
        if cfg.coarse_context == "tile":
            return None, False
        side = -(-(cfg.crop_size * 2**n + 2 * self.context(n)) // f) * f
        if side >= side_t:
            return None, False
        return random_window(side_t, side, f, self.t.gen), True

    def _real(self, sampler: TileSampler, n: int, bs: int) -> tuple[list[Tensor | None], Tensor | None, bool]:
        """Real tiles for scale n: the region it needs, as uint8 pixels sent to the device and
        jittered there; their image pyramid from scale n on, their labels and whether cut."""
        region, centred = self._region(n)
        raw = sampler.sample_raw(bs, region)
        xs = [None] * n + list(image_pyramid(raw.images(self.t.device, 2**n), self.t.num_scales - n))
        labels = None if raw.labels is None else raw.labels.to(self.t.device)
        return xs, labels, centred

    # ---- coarser scales (frozen) ----------------------------------------------------
    @torch.no_grad()
    def _coarse_images(self, n: int, ys: list[Tensor | None], noisy: bool,
                       zs: list[Tensor | None] | None = None) -> list[Tensor | None] | None:
        """The frozen coarser scales' images on the whole region (noise ``zs``, or drawn here)."""
        if n == self.t.num_scales - 1:
            return None
        zs = self._noise_maps(ys, n + 1, noisy) if zs is None else zs
        with self.t.autocast():
            out = self.t.generator(ys, zs, stop_at=n + 1)
        return [o.float() if o is not None else None for o in out]

    @torch.no_grad()
    def _prev_image(self, n: int, ys: list[Tensor | None], zs: list[Tensor | None], x_n: Tensor, w: Window,
                    boxed: bool) -> tuple[Tensor | None, list[Tensor | None] | None]:
        """The window ``w`` of x_{n+1} upsampled to scale n, from noise ``zs``. ``boxed``: each
        coarser scale runs only where the window needs it (the same values); else the
        whole region, whose pyramid is returned too (None when boxed)."""
        if n == self.t.num_scales - 1:
            return None, None
        coarse = ys[n + 1]
        assert coarse is not None
        frozen = not any(s.training for s in self.t.generator.scales[n + 1:])  # eval: BatchNorm's running stats
        box = _source_box(w, coarse, x_n) if boxed and self.boxes and frozen else None
        if box is None:
            pyramid = self._coarse_images(n, ys, True, zs)
            assert pyramid is not None and pyramid[n + 1] is not None
            return _cut(_up(pyramid[n + 1], x_n), w), pyramid  # type: ignore[arg-type]
        with self.t.autocast():
            x = self.t.generator.forward_box(ys, zs, n + 1, box)
        return _up_cut(x.float(), box, w), None

    @torch.no_grad()
    def _prev_logits(self, n: int, xs: list[Tensor | None], x_n: Tensor, w: Window) -> Tensor | None:
        """The window ``w`` of the frozen coarser segmenters' logits of scale n + 1 on images
        ``xs``, upsampled to scale n (the size of ``x_n``). S_{n+1}'s up path runs only on
        the part of the region the window needs (the same values)."""
        if n == self.t.num_scales - 1:
            return None
        coarse = xs[n + 1]
        assert coarse is not None
        frozen = not self.t.segmenter.scales[n + 1].training
        box = _source_box(w, coarse, x_n) if self.boxes and frozen else None
        with self.t.autocast():
            logits = self.t.segmenter(xs, None, stop_at=n + 1, box=box)[n + 1]
        assert logits is not None
        return _cut(_up(logits.float(), x_n), w) if box is None else _up_cut(logits.float(), box, w)

    # ---- public -----------------------------------------------------------------------
    def make(self, n: int, use_synthetic: bool = False) -> ScaleBatch:
        """A batch for scale n: sample tiles, build pyramids, run coarser scales, crop.

        ``use_synthetic``: also run the coarser segmenters on the generated images (S sees
        synthetic pairs once the hold-out is over).
        """
        t, cfg = self.t, self.t.cfg
        bs = cfg.batch_size(t.rank)
        # 1. real tiles, cut to the region this scale needs, and their pyramids from scale n
        xs, labels, centred = self._real(t.sampler, n, bs)  # (B, 3, R / 2**m, R / 2**m), (B, R, R)
        assert labels is not None
        ys, labs = mask_pyramid_from(labels, t.model_cfg.num_classes, t.num_scales, n)
        x_n = xs[n]
        assert x_n is not None
        # 2. the random draws of the coarser scales' noise, then of the crop window (the
        # order they always had: running the networks draws nothing)
        last = n == t.num_scales - 1
        zs = None if last else self._noise_maps(ys, n + 1, True)
        w = self._window(*x_n.shape[-2:], centred)
        # 3. the frozen coarser scales, upsampled to scale n and cut to the window. They run
        # only where the window needs them (the same values): the coarser segmenters' up
        # paths always, the generators unless the segmenters read the whole synthetic pyramid.
        use_rec = cfg.loss.rec_active(n, t.num_scales)
        syn_seg = cfg.mode != "generate" and use_synthetic
        up_fake, fake = self._prev_image(n, ys, zs, x_n, w, boxed=not syn_seg)  # type: ignore[arg-type]
        up_rec = None
        if use_rec and not last:
            up_rec = self._prev_image(n, ys, self._noise_maps(ys, n + 1, False), x_n, w, boxed=True)[0]
        s_prev = syn_prev = None
        if cfg.mode != "generate" and up_fake is not None:
            s_prev = self._prev_logits(n, xs, x_n, w)
            if use_synthetic:
                assert fake is not None
                syn_prev = self._prev_logits(n, fake, x_n, w)
        crop_x = _cut(x_n, w)
        assert crop_x is not None
        amp = float(t.generator.noise_amp[n])
        z_shape = (crop_x.shape[0], t.generator.noise_channels(n), *crop_x.shape[-2:])
        gen = GeneratorBatch(
            x=crop_x, y=_cut(ys[n], w),  # type: ignore[arg-type]
            z=amp * self._randn(*z_shape),
            up_fake=up_fake, up_rec=up_rec,
            rec=use_rec, z_rec=amp * self.rec_noise(n, z_shape) if use_rec else None,
            rec_pooling=cfg.loss.rec_pooling(n, t.num_scales),
        )
        batch = ScaleBatch(gen)
        if cfg.mode != "generate":
            batch.seg = SegmenterBatch(labels=_cut(labs[n], w), z_s=self._seg_noise(crop_x),  # type: ignore[arg-type]
                                       s_prev=s_prev, syn_prev=syn_prev)
        if cfg.mode == "ssl":
            batch.unlabeled = self._unlabeled(n, bs)
        return batch

    def _seg_noise(self, x: Tensor) -> Tensor:
        cs = self.t.model_cfg.segmenter.noise_channels
        std = self.t.model_cfg.segmenter.noise_std
        return std * self._randn(x.shape[0], cs, *x.shape[-2:])

    def _unlabeled(self, n: int, bs: int) -> UnlabeledBatch:
        assert self.t.unlabeled_sampler is not None
        us, _, centred = self._real(self.t.unlabeled_sampler, n, bs)
        u_n = us[n]
        assert u_n is not None
        w = self._window(*u_n.shape[-2:], centred)
        u_prev = self._prev_logits(n, us, u_n, w)
        crop_u = _cut(u_n, w)
        assert crop_u is not None
        z_u = self._seg_noise(crop_u)
        share = self.t.cfg.pseudo_positive_fraction
        pseudo_mask = (torch.rand(bs, generator=self.t.gen) < share).to(self.t.device)
        return UnlabeledBatch(u=crop_u, u_prev=u_prev, z_u=z_u, pseudo_mask=pseudo_mask)

    @torch.no_grad()
    def noise_amplitude(self, n: int) -> float:
        """Coarsest: ``noise_amp_init``; finer: factor x RMSE of the coarser reconstruction."""
        t, cfg = self.t, self.t.cfg
        if n == t.num_scales - 1:
            return cfg.noise_amp_init
        raw = t.sampler.sample_raw(cfg.batch_size(t.rank))
        assert raw.labels is not None
        x_n = raw.images(t.device, 2**n)
        ys, _ = mask_pyramid_from(raw.labels.to(t.device), t.model_cfg.num_classes, t.num_scales, n)
        rec = self._coarse_images(n, ys, noisy=False)
        assert rec is not None
        rmse = torch.sqrt(F.mse_loss(_up(rec[n + 1], x_n), x_n))
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
            channels = [t.generator.noise_channels(m) for m in range(len(ys))]
            maps = noise_maps(gen, variants, channels, [(y.shape[-2], y.shape[-1]) for y in ys], stop_at=n)
            zs = [None if z is None else z.to(t.device) for z in maps]
            out = t.generator(ys, zs, stop_at=n)[n]
            row = [t.dataset.classes.to_color(labs[n][0].cpu().numpy())]
            row += list(to_uint8(out.float().cpu()))
            row.append(to_uint8(xs[n][0].cpu()))
            rows.append(row)
        return image_grid(rows)


def _center(a: np.ndarray, size: int) -> np.ndarray:
    """Centre crop (reflect-padding when smaller) to size x size."""
    a = pad_array(a, (size, size), "reflect", centred=True)
    h, w = a.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return a[top:top + size, left:left + size]
