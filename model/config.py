"""Our hyperparameters: frozen dataclasses of the model and its training plus named presets.

The baselines' configs live in :mod:`model.baselines.config`, the experiment budgets in
:mod:`model.experiments.config`. Every checkpoint stores the :class:`ModelConfig` and :class:`TrainConfig` it was made
with (``to_dict``/``from_dict``), so a checkpoint rebuilds its own networks.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

Norm = Literal["batch", "instance", "none"]
Mode = Literal["generate", "joint", "ssl"]
AdvLoss = Literal["lsgan", "log", "hinge"]
MaskInput = Literal["input", "concat"]
Output = Literal["residual", "tanh"]
WeightNorm = Literal["none", "spectral"]
RecWhere = Literal["all", "coarse", "split"]
RecNoise = Literal["zeros", "fixed"]
CoarseContext = Literal["fixed", "receptive", "tile"]
MaskFloor = Literal["zero", "real"]
Augment = Literal["translation", "cutout"]
Precision = Literal["auto", "float32", "bfloat16"]


@dataclass(frozen=True)
class GeneratorConfig:
    """One residual generator per scale (eq. 1).

    Args:
        base_width: channels of the finest scale's conv blocks.
        max_width: cap on the channel count.
        width_doubling: the width doubles every this many scales, counted from the
            finest scale (n = 0) towards the coarsest (paper index n).
        num_blocks: Conv3x3-Norm-LeakyReLU blocks before the output conv.
        norm: normalisation inside the blocks. ``batch`` mixes the statistics of the
            zero-noise reconstruction pass with the noisy passes; ``none`` avoids that.
        noise_channels: channels of the spatial noise map z_n.
        mask_input: ``input``: the mask enters the first block only; ``concat``: it is
            concatenated to the input of every conv (the class stays visible to every layer).
        output: ``residual``: x_n = up(x_{n+1}) + tanh(Phi) (unbounded until export);
            ``tanh``: x_n = tanh(atanh(up(x_{n+1})) + Phi), in [-1, 1] at every scale.
        dilations: dilation of each block's 3x3 conv, one per block (empty: 1 everywhere).
            A block with dilation d sees d pixels further each side at the same cost, so
            (1, 2, 4, 8) widens the receptive field from 11 to 33 pixels of the scale (a
            gland at 1/8); dilated convs zero-pad (reflection needs sides above d).
        dilated_finest: 0: ``dilations`` apply at every scale (one per block); k > 0: only
            at the k finest scales, the coarser ones keep ``num_blocks`` plain 3x3 convs (so
            the coarse scales of a partial file still load under --init-from). There the
            length of ``dilations`` sets the finest scales' number of blocks, so
            ``(1,) * 8`` gives them 8 plain blocks: deeper fine scales.
        fine_widths: channels of the finest scales, finest first, overriding the rule above
            for those scales only (e.g. (96, 96): scales 0 and 1 at 96 channels, the coarser
            ones as before, so the coarse scales of a partial file still load). Empty: the rule.
        noise_blur: Gaussian sigma, in pixels of its scale, of the finest scales' noise maps,
            finest first (e.g. (3.0, 1.5): scale 0 blurred by 3 px, scale 1 by 1.5, both 3 px
            of the full image; coarser scales white). The blurred map is scaled back to unit
            variance, so the noise amplitudes keep their meaning; its blobs are seeds of about
            2 sigma that G can grow into nuclei instead of per-pixel grain. Empty or 0: white.
            (Blurred Gaussian noise has worm-like, not round, excursions; see noise_seeds.)
        noise_seeds: window side w of the finest scales' seed transform, finest first (0 or
            1: off). Before the blur, each noise channel keeps only its values at the maxima
            of their w x w neighbourhood (about one point per w^2 pixels, never two within
            w/2 px: a hard-core point process, as nuclei are) and zero elsewhere, scaled to
            unit second moment; blurred, every point becomes a round blob. It commutes with
            the noise amplitude and keeps zero noise zero.
        detail_rank: colour rank of the finest scales' residual Phi, finest first (e.g.
            (1,): scale 0 adds detail along one colour axis only; coarser scales and 3: every
            colour). Phi is projected onto the ``k`` principal colour axes of the real
            training images' fine detail (``atanh(x) - atanh(up(down(x)))`` for the ``tanh``
            output, ``x - up(down(x))`` for ``residual``; pixels near white left out),
            measured once when training starts and stored in the generator: in real H&E
            nearly all 2-8 px detail varies along one colour axis (darker or lighter), so G
            cannot add colour speckle across it. Probes: EXPERIMENTS.md, session 15.
    """

    base_width: int = 32
    max_width: int = 128
    width_doubling: int = 4
    num_blocks: int = 4
    norm: Norm = "batch"
    noise_channels: int = 3
    mask_input: MaskInput = "input"
    output: Output = "residual"
    dilations: tuple[int, ...] = ()
    dilated_finest: int = 0
    fine_widths: tuple[int, ...] = ()
    noise_blur: tuple[float, ...] = ()
    noise_seeds: tuple[int, ...] = ()
    detail_rank: tuple[int, ...] = ()

    #: Fields that may set single scales; a run that reuses a file's coarse scales may change
    #: them as long as :meth:`scale_settings` of every reused scale stays the same.
    PER_SCALE_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "fine_widths", "noise_blur", "noise_seeds", "dilations", "dilated_finest", "detail_rank")

    def __post_init__(self) -> None:
        if any(w < 1 for w in self.fine_widths):
            raise ValueError(f"generator fine_widths must be positive channel counts, got {self.fine_widths}")
        if any(not math.isfinite(s) or s < 0 for s in self.noise_blur):
            raise ValueError(f"generator noise_blur must be finite sigmas >= 0, got {self.noise_blur}")
        if any(w < 0 for w in self.noise_seeds):
            raise ValueError(f"generator noise_seeds must be window sides >= 0, got {self.noise_seeds}")
        if self.dilated_finest < 0:
            raise ValueError(f"generator dilated_finest must be >= 0, got {self.dilated_finest}")
        if any(k not in (1, 2, 3) for k in self.detail_rank):
            raise ValueError(f"generator detail_rank must be colour ranks 1, 2 or 3, got {self.detail_rank}")

    def noise_sigma(self, n: int) -> float:
        """Gaussian sigma (pixels of scale n) of z_n's blur: ``noise_blur[n]`` for the finest
        scales it names, else 0 (white noise)."""
        return float(self.noise_blur[n]) if n < len(self.noise_blur) else 0.0

    def seed_window(self, n: int) -> int:
        """Window side of z_n's seed transform: ``noise_seeds[n]`` for the finest scales it
        names, else 0 (off)."""
        return int(self.noise_seeds[n]) if n < len(self.noise_seeds) else 0

    def colour_rank(self, n: int) -> int:
        """Colour rank of scale n's residual: ``detail_rank[n]`` for the finest scales it
        names, else 3 (every colour)."""
        return int(self.detail_rank[n]) if n < len(self.detail_rank) else 3

    def width(self, n: int) -> int:
        """Channels of scale n: ``fine_widths[n]`` for the finest scales it names, else
        doubling every ``width_doubling`` scales from ``base_width``, capped at ``max_width``."""
        if n < len(self.fine_widths):
            return self.fine_widths[n]
        return min(self.base_width * 2 ** (n // self.width_doubling), self.max_width)

    def block_dilations(self, n: int = 0) -> tuple[int, ...]:
        """The dilation of every block of scale n (checked against ``num_blocks`` where
        ``dilations`` apply at every scale)."""
        if not self.dilations or 0 < self.dilated_finest <= n:
            return (1,) * self.num_blocks
        if min(self.dilations) < 1 or (self.dilated_finest == 0 and len(self.dilations) != self.num_blocks):
            raise ValueError(f"generator dilations must be {self.num_blocks} values >= 1 (one per block; "
                             f"with dilated_finest, any number), got {self.dilations}")
        return self.dilations

    def scale_settings(self, n: int) -> dict[str, object]:
        """What the per-scale fields make of scale n (its architecture and noise)."""
        return {"generator channels": self.width(n), "noise blur": self.noise_sigma(n),
                "noise seeds": self.seed_window(n), "dilations": self.block_dilations(n),
                "colour rank": self.colour_rank(n)}

    def reach(self, n: int = 0) -> int:
        """Pixels of scale n an output of its Phi depends on beyond itself (blocks and head)."""
        return sum(self.block_dilations(n)) + 1


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Multi-scale conditional PatchGAN (pix2pixHD): one PatchGAN per view.

    Args:
        base_width: channels of the first layer.
        max_width: cap on the channel count.
        num_layers: stride-2 conv layers of each PatchGAN.
        num_views: views at 1x, 1/2, 1/4 ... resolution (identical architecture).
        norm: normalisation after every conv but the first and the last.
        weight_norm: ``spectral`` wraps every conv in spectral normalisation (SNGAN).
        antialias: blur the input of every stride-2 conv with a 3x3 binomial filter
            (anti-aliased downsampling, Zhang 2019), so that a periodic pattern finer than
            the stride cannot alias into what D sees.
    """

    base_width: int = 64
    max_width: int = 256
    num_layers: int = 3
    num_views: int = 3
    norm: Norm = "instance"
    weight_norm: WeightNorm = "none"
    antialias: bool = False


@dataclass(frozen=True)
class SegmenterConfig:
    """Mini FC-DenseNet per scale (eq. 5), about 1M parameters at the defaults (4 pools).

    Args:
        first_width: channels of the first 3x3 conv.
        growth_rate: channels each dense layer adds.
        down_layers: dense layers per block on the down path (one transition down each).
        bottleneck_layers: dense layers of the bottleneck block.
        dropout: dropout inside dense layers.
        noise_channels: channels of the noise map concatenated to the input.
        noise_std: standard deviation of that noise in training; inference uses zeros.
    """

    first_width: int = 48
    growth_rate: int = 12
    down_layers: tuple[int, ...] = (4, 4, 4, 4)
    bottleneck_layers: int = 4
    dropout: float = 0.2
    noise_channels: int = 1
    noise_std: float = 0.1


@dataclass(frozen=True)
class ModelConfig:
    """What inference needs to rebuild the networks.

    Args:
        num_classes: classes of the masks (2 for binary masks).
        num_scales: N + 1 scales, factor 2 between neighbours.
    """

    num_classes: int = 2
    num_scales: int = 5
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)

    @property
    def factor(self) -> int:
        """Mask sides must be multiples of this (padding makes them so)."""
        return 2 ** (self.num_scales - 1)


@dataclass(frozen=True)
class LossConfig:
    """Loss weights of eq. 2 and 8 (section 3.4 defaults).

    Args:
        adversarial: ``lsgan`` (pix2pixHD default), ``log`` (eq. 6) or ``hinge``.
        rec: alpha, reconstruction (MSE, eq. 3).
        rec_where: ``all`` scales, or only the ``coarse`` ones (the coarsest ``rec_scales``);
            finer scales then learn texture from the adversarial terms alone. ``split``: every
            scale, the coarsest ``rec_scales`` at full resolution (they fix the layout) and
            the finer ones after pooling by ``rec_downsample`` (an anchor for colour only).
        rec_scales: with ``rec_where`` ``coarse`` or ``split``, how many of the coarsest scales.
        rec_downsample: compare reconstruction and real image after average pooling by this
            factor (1: full resolution), so positions of nuclei are not regressed.
        rec_noise: noise map of the reconstruction pass: ``zeros`` (eq. 3) or SinGAN's
            ``fixed`` random map z* (the same draw every step, so the pass looks like a noisy one).
        feat: beta, feature matching (L1 over D features, eq. 4).
        perc: gamma, VGG19 perceptual loss; off when no weights file is configured.
        diversity: weight of the mode-seeking term (MSGAN, DSGAN): G is rewarded for
            |G(z1) - G(z2)| / |z1 - z2| (this scale's noise; same mask and coarser image), so it
            cannot ignore its noise and every variant look the same; at every scale, the
            coarsest one too. 0 turns it off.
        diversity_cap: the ratio stops earning reward above this (unbounded reward diverges).
        mask: weight of the mask-consistency term: the cross-entropy, against the mask, of a
            frozen critic (:class:`CriticConfig`) trained on the real pairs of the scale at its
            start, on G's image. It rewards the mask directly, where reconstruction rewards the
            paired image (and averages its structure away). 0 turns it off (no critic trained).
        mask_floor: ``zero``: G pays the whole cross-entropy; ``real``: only what exceeds the
            critic's cross-entropy on real pairs (a hinge), so G gains nothing from reading as
            its mask more plainly than real tissue does (a caricature of the mask).
        ce: alpha', cross-entropy of S on real labelled pairs.
        ce_synthetic: cross-entropy weight of synthetic pairs once they reach S.
        adv_s: weight of S's adversarial term (joint and ssl modes).
        r1: gamma of the R1 penalty (Mescheder et al. 2018): D's update also pays
            gamma / 2 x the squared norm of the gradient of its logits with respect to the
            real image, which keeps D smooth around real data so that G is not pushed into
            patterns only D reacts to. 0 turns it off (it doubles the cost of D's real pass).
        patch: weight of the patch-distribution term: the sliced Wasserstein distance, class
            by class, between the ``patch_size`` x ``patch_size`` patches of G's image and of
            the paired real image (:func:`model.training.losses.patch_distribution`). It
            asks for real tissue's patches (nuclei, fibres) in the right class, but at no
            particular place, so unlike the reconstruction it does not average them away.
            At every scale; 0 turns it off.
        patch_size: side of those patches in pixels (odd).
        patch_projections: random directions drawn per step.
    """

    adversarial: AdvLoss = "lsgan"
    rec: float = 0.001
    rec_where: RecWhere = "all"
    rec_scales: int = 2
    rec_downsample: int = 1
    rec_noise: RecNoise = "zeros"
    feat: float = 10.0
    perc: float = 10.0
    diversity: float = 0.0
    diversity_cap: float = 1.0
    mask: float = 0.0
    mask_floor: MaskFloor = "zero"
    ce: float = 1.0
    ce_synthetic: float = 0.03
    adv_s: float = 1.0
    r1: float = 0.0
    patch: float = 0.0
    patch_size: int = 7
    patch_projections: int = 64

    def __post_init__(self) -> None:
        if self.patch < 0:
            raise ValueError(f"loss patch must be >= 0, got {self.patch}")
        if self.patch_size < 1 or self.patch_size % 2 == 0:
            raise ValueError(f"loss patch_size must be a positive odd number of pixels, got {self.patch_size}")
        if self.patch_projections < 1:
            raise ValueError(f"loss patch_projections must be >= 1, got {self.patch_projections}")

    def rec_active(self, n: int, num_scales: int) -> bool:
        """Whether scale n has a reconstruction term."""
        if self.rec_where not in ("all", "coarse", "split"):
            raise ValueError(f"unknown rec_where {self.rec_where!r}; choose all, coarse or split")
        return self.rec > 0 and (self.rec_where != "coarse" or n >= num_scales - self.rec_scales)

    def rec_pooling(self, n: int, num_scales: int) -> int:
        """The pooling factor of scale n's reconstruction term (1: full resolution)."""
        if self.rec_where == "split" and n >= num_scales - self.rec_scales:
            return 1
        return self.rec_downsample


@dataclass(frozen=True)
class CriticConfig:
    """The mask critic of ``LossConfig.mask``: a dilated CNN per scale, trained on real pairs.

    Args:
        width: channels of every conv.
        dilations: one 3x3 conv per entry with this dilation; the receptive field is
            1 + 2 * (1 + sum): 67 pixels of the scale at the defaults, a gland at 1/4.
        steps: Adam steps on real pairs of the scale before its first G step.
        lr: Adam learning rate.
    """

    width: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1)
    steps: int = 300
    lr: float = 1e-3


@dataclass(frozen=True)
class TrainConfig:
    """How to train (Algorithms 1-3).

    Args:
        mode: ``generate`` (Alg. 1), ``joint`` (Alg. 2) or ``ssl`` (Alg. 3).
        tile_size: side of the training tiles cut (with overlap) from the dataset images.
        tile_overlap: overlap between neighbouring tiles, in pixels.
        crop_size: scales finer than this are trained on random crops of this side,
            cut consistently across scales.
        crop_context: full-resolution pixels of context kept around a scale's crop when
            the coarser scales run: they see a region of crop * 2**n + 2 * crop_context
            pixels instead of the whole tile, so a step's cost does not grow with the tile.
        coarse_context: what the frozen coarser scales see around a crop: ``fixed``
            (``crop_context`` pixels), ``receptive`` (at least the coarser scales' receptive
            field, so training sees what inference sees) or ``tile`` (the whole tile).
        steps_per_scale: optimisation steps at every scale.
        d_steps: discriminator updates per generator update (same batch, fresh augmentation).
        augment: DiffAugment policies applied to every pair D sees (image and mask alike):
            ``translation`` (shift by up to 1/8 of the side), ``cutout`` (a square of half the side).
        batch_sizes: per scale from coarse to fine; the last one repeats if short.
        holdout_steps: steps at each scale before synthetic pairs reach S (paper: 100 epochs).
        lr_g, lr_s, lr_d: Adam learning rates; betas shared.
        lr_decay: share of every scale's steps, at its end, over which the three learning
            rates fall linearly towards zero (pix2pixHD: the second half); 0 keeps them constant.
            A GAN that oscillates then settles instead of stopping wherever the last step left it.
        ema: decay of an exponential moving average of the current scale's generator weights
            (0: off). The average, not the last step's weights, is what the scale keeps
            (samples, snapshots, serving files) and what the finer scales train on; the
            scale's own steps are unchanged. The decay ramps up as ``min(ema, (1 + t) / (10 + t))``
            after t steps: 0.985 (about the last 70 steps) at step 600, the cap 0.99 (about
            100 steps) from step 890 on.
        noise_amp_init: amplitude of the coarsest scale's noise.
        noise_amp_factor: finer scales: this times the RMSE of the coarser reconstruction.
        pseudo_positive_fraction: ssl: share of S-labelled unlabelled pairs used as D positives.
        labeled_fraction: ssl: keep this share of the labelled tiles labelled, the rest unlabelled.
        transductive: ssl: add evaluation images to the unlabelled pool.
        checkpoint_every: save a resumable checkpoint every this many steps.
        log_every: read the losses from the device every this many steps (and before every
            checkpoint and at every scale's end): one ``metrics.jsonl`` record with their mean
            over those steps. Reading is a host sync, which stalls a GPU's queue; 1 logs every
            step. A non-finite loss stops training when it is read.
        sample_every: write a sample grid every this many steps (and at every scale's end;
            0: only at the scales' ends).
        snapshot_every: write a serving file of the run as it stands, ``snapshots/scale{n}-step{k}.pt``,
            before a scale's first step and after every this many of its steps (0: never):
            the points of a learning curve (``histosynth experiment curve``).
        color_jitter: strength of brightness/contrast/saturation/hue jitter on images.
        loss: loss weights.
        critic: the mask critic (used when ``loss.mask`` > 0).
        perceptual_weights: local VGG19 weights file; None turns the perceptual term off.
        device: ``auto`` (CUDA if present), ``cpu`` or ``cuda``.
        precision: of the forward passes (autocast): ``auto`` bfloat16 on CUDA and float32
            on a CPU; ``bfloat16`` also on a CPU (faster steps where the CPU has AVX512-BF16
            or AMX, slower where it has not); ``float32`` also on CUDA. Weights,
            optimiser states and gradients are float32 either way.
        seed: seeds every random number generator.
    """

    mode: Mode = "joint"
    tile_size: int = 1024
    tile_overlap: int = 128
    crop_size: int = 256
    crop_context: int = 128
    coarse_context: CoarseContext = "fixed"
    steps_per_scale: int = 2000
    d_steps: int = 1
    augment: tuple[Augment, ...] = ()
    batch_sizes: tuple[int, ...] = (8, 6, 4, 4, 3)
    holdout_steps: int = 500
    lr_g: float = 1e-4
    lr_s: float = 5e-4
    lr_d: float = 5e-4
    lr_decay: float = 0.0
    ema: float = 0.0
    betas: tuple[float, float] = (0.5, 0.999)
    noise_amp_init: float = 1.0
    noise_amp_factor: float = 0.1
    pseudo_positive_fraction: float = 0.3
    labeled_fraction: float = 1.0
    transductive: bool = False
    checkpoint_every: int = 200
    log_every: int = 1
    sample_every: int = 500
    snapshot_every: int = 0
    color_jitter: float = 0.05
    loss: LossConfig = field(default_factory=LossConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    perceptual_weights: str | None = None
    device: str = "auto"
    precision: Precision = "auto"
    seed: int = 0

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier of a scale's ``step``-th update (0-based), see ``lr_decay``."""
        if not 0.0 <= self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in [0, 1], got {self.lr_decay}")
        decay_steps = self.lr_decay * self.steps_per_scale
        if decay_steps <= 0:
            return 1.0
        return min(1.0, (self.steps_per_scale - step) / decay_steps)

    def batch_size(self, scale_rank: int) -> int:
        """Batch size of the ``scale_rank``-th scale trained (0 = coarsest)."""
        return self.batch_sizes[min(scale_rank, len(self.batch_sizes) - 1)]


@dataclass(frozen=True)
class Preset:
    """A named pair of model and training configs."""

    model: ModelConfig
    train: TrainConfig


PRESETS: dict[str, Preset] = {
    # Seconds on a CPU: tests and smoke runs.
    "tiny": Preset(
        model=ModelConfig(
            num_scales=3,
            generator=GeneratorConfig(base_width=8, max_width=16, num_blocks=2),
            discriminator=DiscriminatorConfig(base_width=8, max_width=16, num_layers=2, num_views=2),
            segmenter=SegmenterConfig(first_width=8, growth_rate=4, down_layers=(2, 2), bottleneck_layers=2, dropout=0.0),
        ),
        train=TrainConfig(
            tile_size=64, tile_overlap=16, crop_size=32, steps_per_scale=4, batch_sizes=(2,),
            holdout_steps=2, checkpoint_every=2, sample_every=4,
        ),
    ),
    # The shipped models: 5 scales, 1024 tiles, 256 crops; sized for a CPU budget.
    "base": Preset(
        model=ModelConfig(num_scales=5),
        train=TrainConfig(steps_per_scale=600, holdout_steps=200, batch_sizes=(8, 6, 4, 4, 3)),
    ),
    # The bundled demo models, trained on a 2-core CPU in about an hour each: the base pyramid
    # with a slimmer segmenter (0.27M parameters instead of ~1M: the dense blocks dominate a
    # CPU step) and 128 crops with 64 px of context, so each step costs about a second; and
    # SinGAN's reconstruction weight (10 instead of 0.001), which makes the short run follow
    # the mask: with 0.001, 400 coarsest steps still gave mask-blind noise.
    "demo": Preset(
        model=ModelConfig(
            num_scales=5,
            segmenter=SegmenterConfig(first_width=32, growth_rate=8, down_layers=(3, 3, 3, 3),
                                      bottleneck_layers=3),
        ),
        train=TrainConfig(crop_size=128, crop_context=64, steps_per_scale=350, holdout_steps=175,
                          batch_sizes=(6, 4, 4, 3, 3), checkpoint_every=50,
                          loss=LossConfig(rec=10.0)),
    ),
    # The realism recipe of issue 10 (see EXPERIMENTS.md), sized for a 2-core CPU: no norm in
    # G (BatchNorm mixed the zero-noise reconstruction pass into the noisy passes' statistics),
    # the mask fed to every conv, an image bounded at every scale (no halos from clipping),
    # coarse context as large as the coarser scales' receptive field; a light spectral-norm D
    # (32 filters, 2 views) at G's learning rate with DiffAugment against overfitting six
    # tiles; reconstruction (with SinGAN's fixed z*) only at the two coarsest scales, so the
    # finer scales learn nuclei from the adversarial terms instead of regressing to the mean.
    # 512 tiles: the coarsest scale sees 32x32, which is enough for a mask-conditioned layout.
    "realistic": Preset(
        model=ModelConfig(
            num_scales=5,
            generator=GeneratorConfig(norm="none", mask_input="concat", output="tanh"),
            discriminator=DiscriminatorConfig(base_width=32, max_width=128, num_views=2,
                                              weight_norm="spectral"),
            segmenter=SegmenterConfig(first_width=32, growth_rate=8, down_layers=(3, 3, 3, 3),
                                      bottleneck_layers=3),
        ),
        train=TrainConfig(tile_size=512, crop_size=128, coarse_context="receptive", steps_per_scale=300,
                          holdout_steps=150, batch_sizes=(6, 4, 4, 3, 3), lr_g=2e-4, lr_d=2e-4,
                          augment=("translation", "cutout"), checkpoint_every=50,
                          loss=LossConfig(rec=10.0, rec_where="coarse", rec_scales=2, rec_noise="fixed")),
    ),
    # The fine scales of the realism recipe (issue 10, EXPERIMENTS.md "Realism recipe"): start
    # from a `realistic` file whose coarse scales are trained (--init-from RUN/scales/scale2.pt)
    # and train scales 1 and 0 with the adversarial term in charge of texture: no feature
    # matching (a paired regression that averaged nuclei away), reconstruction at every scale
    # but on 8x8-pooled images (it anchors colour and layout, not nuclei positions), noise as
    # strong as the detail the coarser scales miss (factor 1.0 instead of SinGAN's 0.1), and a
    # discriminator without spectral norm at G's learning rate of 5e-4 (with spectral norm or
    # lr_g = 2e-4, G stayed smooth for hundreds of steps), with the learning rates decaying to
    # zero over the second half of each scale (at a constant rate the binary model's texture
    # at step 500 had turned into diagonal stripes by step 600). Same G and S as `realistic`.
    "realistic-fine": Preset(
        model=ModelConfig(
            num_scales=5,
            generator=GeneratorConfig(norm="none", mask_input="concat", output="tanh"),
            discriminator=DiscriminatorConfig(base_width=32, max_width=128, num_views=2),
            segmenter=SegmenterConfig(first_width=32, growth_rate=8, down_layers=(3, 3, 3, 3),
                                      bottleneck_layers=3),
        ),
        train=TrainConfig(tile_size=512, crop_size=128, coarse_context="receptive", steps_per_scale=600,
                          holdout_steps=150, batch_sizes=(6, 4, 4, 3, 3), lr_g=5e-4, lr_d=5e-4, lr_decay=0.5,
                          noise_amp_factor=1.0, augment=("translation", "cutout"), checkpoint_every=50,
                          sample_every=100,
                          loss=LossConfig(rec=10.0, rec_where="all", rec_downsample=8, rec_noise="fixed",
                                          feat=0.0)),
    ),
    # Section 3.4 of the paper, for a GPU.
    "paper": Preset(
        model=ModelConfig(
            num_scales=5,
            generator=GeneratorConfig(base_width=32, max_width=128),
            discriminator=DiscriminatorConfig(base_width=64, num_layers=3, num_views=3),
        ),
        train=TrainConfig(steps_per_scale=20000, holdout_steps=10000, crop_size=512),
    ),
}


def preset(name: str) -> Preset:
    """Look a preset up by name, with an error that lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from :func:`to_dict` output.

    Unknown keys are an error so that a typo in a JSON config does not pass silently.
    """
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        ftype = _field_type(cls, name)
        if is_dataclass(ftype) and isinstance(value, dict):
            kwargs[name] = from_dict(ftype, value)  # type: ignore[arg-type]
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls).get(name)


def replace(cfg: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that accepts dotted keys for nested configs."""
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(cfg, head), **sub)
    return dataclasses.replace(cfg, **flat)


# ---- realism measures (model/evaluation/realism.py) ---------------------------------------------------
@dataclass(frozen=True)
class TwoSampleConfig:
    """The classifier two-sample test: a small CNN trained from scratch on 64 px patches.

    Args:
        patch: patch side in pixels, taken at full resolution.
        steps: optimisation steps (fixed budget; about a minute on one CPU thread at 600).
        batch_size: patches per step, half from each set.
        lr: Adam learning rate.
        width: channels of the first conv (doubling at each of the three stride-2 convs).
        test_stride: stride of the grid of test patches (patch: non-overlapping).
        repeats: classifiers trained with seeds seed, seed + 1, ...; the reported accuracy is
            their median. One classifier whose training failed reads as "indistinguishable"
            (seen: 0.68 where two more seeds gave 1.00); the median of 3 survives one such run
            and one lucky run on the floor.
        blur_sigmas: Gaussian blurs (sigma in full-resolution pixels) after which the test
            runs again on both sets and on the floor: the spatial scale at which generated
            and real images still differ (the accuracy falls to the floor once the blur
            removes what tells them apart). Empty: only the unblurred test.
    """

    patch: int = 64
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 16
    test_stride: int = 64
    repeats: int = 3
    blur_sigmas: tuple[float, ...] = ()


@dataclass(frozen=True)
class NucleiConfig:
    """Nuclei found by colour deconvolution (``skimage.color.rgb2hed``).

    At 20x (about 0.5 um per pixel) epithelial nuclei of 5-10 um cover about 80-320 px and
    elongated stromal nuclei about 3 x 10 um = 100 px; ``min_area`` 30 px (a disc of about
    3 um) drops specks of haematoxylin noise, ``max_area`` 800 px (about 16 um) drops merged
    clusters and dark lumen debris.

    Args:
        min_area, max_area: connected objects of nucleus size, in pixels at 20x.
        opening: iterations of a 3x3 binary opening before labelling (splits thin bridges).
        threshold_subsample: every n-th pixel (per axis) enters the Otsu threshold fit.
    """

    min_area: int = 30
    max_area: int = 800
    opening: int = 1
    threshold_subsample: int = 4

    def at_downscale(self, factor: int) -> NucleiConfig:
        """The same nuclei on images shrunk ``factor`` times: areas / factor**2, no opening."""
        if factor == 1:
            return self
        return dataclasses.replace(self, min_area=max(1, round(self.min_area / factor**2)),
                                   max_area=max(2, round(self.max_area / factor**2)), opening=0)
