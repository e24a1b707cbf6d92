"""Residual pyramid generator (eq. 1): x_n = x_{n+1}^up + Phi_n(y_n, z_n + x_{n+1}^up)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from model.config import GeneratorConfig, ModelConfig
from model.nets.blocks import (
    Box,
    ConvBlock,
    cut_box,
    grow_box,
    half_box,
    seed_points,
    smooth_noise,
    upsample,
)
from model.nets.tiling import run_tiled, run_tiled_local

#: Coarser images are clamped to +-(1 - EPS) before atanh (``output="tanh"``).
EPS = 1e-3


class MaskConcatStack(nn.Module):
    """Phi with the mask concatenated to the input of every conv (``mask_input="concat"``).

    Takes the same input as the plain stack, ``cat(y, z)``, and reads the mask from its
    first ``num_classes`` channels. Every layer is local, so inference may run it tile by
    tile (:func:`model.nets.tiling.run_tiled_local`).

    Args:
        num_classes: K, the mask channels at the front of the input.
        in_ch: input channels (K + noise channels).
        width: channels of the conv blocks.
        cfg: generator hyperparameters.
        dilations: the blocks' dilations (``cfg.block_dilations(n)`` of its scale).
    """

    def __init__(self, num_classes: int, in_ch: int, width: int, cfg: GeneratorConfig,
                 dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.blocks = nn.ModuleList(
            ConvBlock(in_ch if i == 0 else width + num_classes, width, cfg.norm, d)
            for i, d in enumerate(dilations)
        )
        self.head = nn.Conv2d(width + num_classes, 3, 3, padding=1, padding_mode="reflect")
        self._reach = sum(dilations) + 1

    @property
    def reach(self) -> int:
        """Pixels an output depends on beyond itself: the dilation of every 3x3 conv."""
        return self._reach

    def tileable(self) -> bool:
        """Whether every layer is local (no instance norm, no BatchNorm in training)."""
        return not self.training and not any(isinstance(m, nn.InstanceNorm2d) for m in self.modules())

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks[0](x)
        # the mask in the memory format of the activations: concatenating a strided slice
        # with channels-last activations takes a slow path (43 % of a CPU generation)
        y = x[:, : self.num_classes].contiguous(memory_format=_memory_format(h))  # (B, K, H, W)
        for block in self.blocks[1:]:
            h = block(torch.cat([h, y], dim=1))
        return self.head(torch.cat([h, y], dim=1))  # (B, 3, H, W)


def _memory_format(x: Tensor) -> torch.memory_format:
    """channels_last when ``x`` is stored so (and not trivially both), else contiguous."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _phi_stack(num_classes: int, in_ch: int, width: int, cfg: GeneratorConfig,
               dilations: tuple[int, ...]) -> nn.Module:
    if cfg.mask_input == "concat":
        return MaskConcatStack(num_classes, in_ch, width, cfg, dilations)
    if cfg.mask_input != "input":
        raise ValueError(f"unknown generator mask_input {cfg.mask_input!r}; choose input or concat")
    blocks = [ConvBlock(in_ch if i == 0 else width, width, cfg.norm, d) for i, d in enumerate(dilations)]
    return nn.Sequential(*blocks, nn.Conv2d(width, 3, 3, padding=1, padding_mode="reflect"))


class ScaleGenerator(nn.Module):
    """G_n of one scale: Phi = ``num_blocks`` ConvBlocks then a Conv3x3 to RGB.

    The coarsest scale maps ``cat(y, z)`` to ``tanh(Phi(...))``; finer scales add a tanh
    residual to the upsampled coarser image (``output="residual"``) or add Phi to its
    atanh and squash again (``output="tanh"``: bounded at every scale), with noise of 3
    channels added to the coarser image at the input.

    Args:
        num_classes: K, channels of the one-hot mask.
        width: channels of the conv blocks.
        cfg: generator hyperparameters.
        coarsest: whether this is G_N (no coarser image).
        noise_sigma: Gaussian blur (pixels) of the noise map before it enters
            (``GeneratorConfig.noise_blur``); 0: white noise as drawn.
        seed_window: window of the seed transform applied before the blur
            (``GeneratorConfig.noise_seeds``); 0: off.
        dilations: the blocks' dilations (default: ``cfg.block_dilations()``).
        colour_rank: 3, or the number of colour axes (``GeneratorConfig.detail_rank``) that Phi
            is projected onto; below 3 the axes live in the buffer ``detail_axes`` (3, 3),
            one per column, most varied first (:meth:`PyramidGenerator.set_detail_axes`).
    """

    detail_axes: Tensor

    def __init__(self, num_classes: int, width: int, cfg: GeneratorConfig, coarsest: bool,
                 noise_sigma: float = 0.0, seed_window: int = 0, dilations: tuple[int, ...] | None = None,
                 colour_rank: int = 3) -> None:
        super().__init__()
        if cfg.num_blocks < 1:
            raise ValueError(f"generator num_blocks must be >= 1, got {cfg.num_blocks}")
        if cfg.output not in ("residual", "tanh"):
            raise ValueError(f"unknown generator output {cfg.output!r}; choose residual or tanh")
        if colour_rank < 3 and coarsest:
            raise ValueError("detail_rank applies to residual scales; the coarsest scale draws every colour "
                             "(name fewer scales in generator.detail_rank)")
        self.colour_rank = colour_rank
        if colour_rank < 3:  # identity until the trainer measures the real detail's axes
            self.register_buffer("detail_axes", torch.eye(3))
        self.coarsest = coarsest
        self.output = cfg.output
        self.noise_channels = cfg.noise_channels if coarsest else 3
        self.noise_sigma, self.seed_window = noise_sigma, seed_window
        dilations = cfg.block_dilations() if dilations is None else dilations
        self.phi = _phi_stack(num_classes, num_classes + self.noise_channels, width, cfg, dilations)
        #: Inference only: run Phi on tiles of this side when the image is larger (same
        #: pixels, a fraction of the memory; see :mod:`model.nets.tiling`). Set by
        #: :func:`model.nets.fuse.fuse_for_inference`.
        self.tile: int | None = None

    def forward(self, y: Tensor, z: Tensor, prev_up: Tensor | None) -> Tensor:
        """Generate this scale's image.

        Args:
            y: (B, K, H, W) one-hot (or soft) mask.
            z: (B, Cz, H, W) noise, already scaled; turned into seed points (``seed_window``)
                and blurred (``noise_sigma``) here, on the whole map before any tiling, so
                tiled inference stays exact.
            prev_up: (B, 3, H, W) coarser image upsampled to (H, W); None at the coarsest.

        Returns:
            (B, 3, H, W) image.
        """
        return self.render(y, self.shape_noise(z), prev_up)

    def shape_noise(self, z: Tensor) -> Tensor:
        """The noise map as Phi sees it: seed points (``seed_window``), then the blur
        (``noise_sigma``); unchanged when both are off. Runs on whole maps only."""
        return smooth_noise(seed_points(z, self.seed_window), self.noise_sigma)

    def render(self, y: Tensor, z: Tensor, prev_up: Tensor | None) -> Tensor:
        """:meth:`forward` after :meth:`shape_noise`: local, so a crop of the inputs gives
        that crop's image, exact where it is Phi's reach (:meth:`GeneratorConfig.reach`) pixels
        from the crop's inner edges."""
        if self.coarsest != (prev_up is None):
            raise ValueError("the coarsest generator takes no coarser image; finer ones need it")
        if prev_up is None:
            return torch.tanh(self._phi(torch.cat([y, z], dim=1)))
        phi = self._project(self._phi(torch.cat([y, z + prev_up], dim=1)))  # (B, 3, H, W)
        if self.output == "tanh":
            return torch.tanh(torch.atanh(prev_up.clamp(-1 + EPS, 1 - EPS)) + phi)
        return prev_up + torch.tanh(phi)

    def _project(self, phi: Tensor) -> Tensor:
        """Phi projected onto the ``colour_rank`` first detail axes (pointwise, so tiling
        stays exact); unchanged at rank 3."""
        if self.colour_rank >= 3:
            return phi
        axes = self.detail_axes[:, : self.colour_rank].to(phi.dtype)  # (3, k)
        return nn.functional.conv2d(phi, (axes @ axes.T)[:, :, None, None])

    def _phi(self, x: Tensor) -> Tensor:
        if self.tile is None or self.training or max(x.shape[-2:]) <= self.tile:
            return self.phi(x)
        if isinstance(self.phi, MaskConcatStack):
            return run_tiled_local(self.phi, x, self.tile, self.phi.reach)
        return run_tiled(self.phi, x, self.tile)


class PyramidGenerator(nn.Module):
    """G_0..G_N, indexed by n (0 finest); ``noise_amp`` scales each z_n.

    Noise maps passed to :meth:`forward_scale` and :meth:`forward` are unit-scale (e.g.
    standard normal, or zeros); they are multiplied by ``noise_amp[n]`` inside.

    Args:
        cfg: model config (classes, scales, generator hyperparameters).
    """

    noise_amp: Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_scales = cfg.num_scales
        last = cfg.num_scales - 1
        self.scales = nn.ModuleList(
            ScaleGenerator(cfg.num_classes, self.width(n), cfg.generator, coarsest=n == last,
                           noise_sigma=cfg.generator.noise_sigma(n), seed_window=cfg.generator.seed_window(n),
                           dilations=cfg.generator.block_dilations(n), colour_rank=cfg.generator.colour_rank(n))
            for n in range(cfg.num_scales)
        )
        self.register_buffer("noise_amp", torch.ones(cfg.num_scales))

    def needs_detail_axes(self) -> bool:
        """Whether any scale projects its residual onto measured colour axes."""
        return any(g.colour_rank < 3 for g in self.scales)

    def set_detail_axes(self, axes: Tensor) -> None:
        """Store the detail colour axes (3, 3), one per column, in every scale that projects
        its residual onto them."""
        if axes.shape != (3, 3):
            raise ValueError(f"detail axes must be a (3, 3) matrix, got {tuple(axes.shape)}")
        for g in self.scales:
            if g.colour_rank < 3:
                g.detail_axes.copy_(axes)

    def width(self, n: int) -> int:
        """Channels of scale n (:meth:`model.config.GeneratorConfig.width`)."""
        return self.cfg.generator.width(n)

    def noise_channels(self, n: int) -> int:
        """Channels of z_n."""
        return self.scales[n].noise_channels

    def noise_like(self, n: int, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Unit standard-normal z_n matching the mask y_n (B, K, H, W) -> (B, Cz, H, W)."""
        b, _, h, w = y.shape
        shape = (b, self.noise_channels(n), h, w)
        return torch.randn(shape, generator=generator, device=y.device, dtype=y.dtype)

    def forward_scale(self, n: int, y: Tensor, z: Tensor | None, prev: Tensor | None) -> Tensor:
        """x_n from y_n, z_n and the coarser output.

        Args:
            n: scale index.
            y: (B, K, H, W) mask of scale n.
            z: (B, Cz, H, W) unit-scale noise; None means zeros.
            prev: (B, 3, h, w) x_{n+1} at its own size (upsampled here); None at n = N.

        Returns:
            (B, 3, H, W) image x_n.
        """
        if z is None:
            z = torch.zeros(
                y.shape[0], self.noise_channels(n), *y.shape[-2:], device=y.device, dtype=y.dtype
            )
        prev_up = None if prev is None else upsample(prev, y.shape[-2:])  # (B, 3, H, W)
        return self.scales[n](y, self.noise_amp[n] * z, prev_up)

    def forward(
        self, ys: Sequence[Tensor | None], zs: Sequence[Tensor | None], stop_at: int = 0
    ) -> list[Tensor | None]:
        """Run from the coarsest scale N down to ``stop_at``.

        Args:
            ys: masks indexed by n, (B, K, H_n, W_n); entries below ``stop_at`` may be None.
            zs: unit-scale noise indexed by n; None entries mean zeros.
            stop_at: finest scale to compute.

        Returns:
            Images indexed by n, (B, 3, H_n, W_n); None for n < stop_at.
        """
        _check_pyramid_args(len(ys), len(zs), self.num_scales, stop_at)
        out: list[Tensor | None] = [None] * self.num_scales
        prev: Tensor | None = None
        for n in range(self.num_scales - 1, stop_at - 1, -1):
            y = ys[n]
            if y is None:
                raise ValueError(f"mask of scale {n} is missing")
            prev = self.forward_scale(n, y, zs[n], prev)
            out[n] = prev
        return out

    def forward_box(
        self, ys: Sequence[Tensor | None], zs: Sequence[Tensor | None], stop_at: int, box: Box
    ) -> Tensor:
        """Image x_{stop_at} on ``box`` only: ``forward(ys, zs, stop_at)[stop_at]`` cut to the
        box, computing each scale only where the box needs it.

        Traced back from ``stop_at``: a scale's Phi needs its inputs on its box grown by its
        :meth:`GeneratorConfig.reach`, and their upsampled coarser image needs the coarser
        scale's output on :func:`half_box` of that. The noise maps are shaped whole first,
        so shaped noise stays exact too. Where a scale is not exactly half the finer one, the
        pyramid runs whole and is cut.

        Args:
            ys, zs, stop_at: as :meth:`forward`.
            box: (top, left, height, width) of scale ``stop_at``.

        Returns:
            (B, 3, height, width).
        """
        _check_pyramid_args(len(ys), len(zs), self.num_scales, stop_at)
        sizes = [None if y is None else (int(y.shape[-2]), int(y.shape[-1])) for y in ys]
        if any(sizes[m] is None for m in range(stop_at, self.num_scales)) or any(
            sizes[m] != (2 * sizes[m + 1][0], 2 * sizes[m + 1][1])  # type: ignore[index]
            for m in range(stop_at, self.num_scales - 1)
        ):
            full = self.forward(ys, zs, stop_at)[stop_at]
            assert full is not None
            return cut_box(full, box)
        outs: list[Box] = []  # the box each scale's output is needed on, stop_at first
        grown: list[Box] = []  # the box each scale's Phi runs on
        for m in range(stop_at, self.num_scales):
            size = sizes[m]
            assert size is not None
            outs.append(box)
            grown.append(grow_box(box, self.cfg.generator.reach(m), size))
            if m + 1 < self.num_scales:
                box = half_box(grown[-1], sizes[m + 1])  # type: ignore[arg-type]
        prev: Tensor | None = None
        prev_box: Box | None = None
        for m in range(self.num_scales - 1, stop_at - 1, -1):
            y, z = ys[m], zs[m]
            assert y is not None
            if z is None:
                z = torch.zeros(y.shape[0], self.noise_channels(m), *y.shape[-2:], device=y.device, dtype=y.dtype)
            scale, ext, out = self.scales[m], grown[m - stop_at], outs[m - stop_at]
            z = scale.shape_noise(self.noise_amp[m] * z)  # whole map
            prev_up = None
            if prev is not None and prev_box is not None:
                prev_up = cut_box(upsample(prev, (2 * prev_box[2], 2 * prev_box[3])), ext,
                                  origin=(2 * prev_box[0], 2 * prev_box[1]))
            x = scale.render(cut_box(y, ext), cut_box(z, ext), prev_up)
            prev, prev_box = cut_box(x, out, origin=ext[:2]), out
        assert prev is not None
        return prev


def _check_pyramid_args(num_ys: int, num_zs: int, num_scales: int, stop_at: int) -> None:
    if num_ys != num_scales or num_zs != num_scales:
        raise ValueError(
            f"expected {num_scales} masks and noise maps (one per scale), got {num_ys} and {num_zs}"
        )
    if not 0 <= stop_at < num_scales:
        raise ValueError(f"stop_at must be in 0..{num_scales - 1}, got {stop_at}")
