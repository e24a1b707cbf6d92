"""All hyperparameters: frozen dataclasses plus named presets.

Every checkpoint stores the :class:`ModelConfig` and :class:`TrainConfig` it was made
with (``to_dict``/``from_dict``), so a checkpoint rebuilds its own networks.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

Norm = Literal["batch", "instance", "none"]
Mode = Literal["generate", "joint", "ssl"]
AdvLoss = Literal["lsgan", "log", "hinge"]
MaskInput = Literal["input", "concat"]
Output = Literal["residual", "tanh"]
WeightNorm = Literal["none", "spectral"]
RecWhere = Literal["all", "coarse"]
RecNoise = Literal["zeros", "fixed"]
CoarseContext = Literal["fixed", "receptive", "tile"]
Augment = Literal["translation", "cutout"]


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
    """

    base_width: int = 32
    max_width: int = 128
    width_doubling: int = 4
    num_blocks: int = 4
    norm: Norm = "batch"
    noise_channels: int = 3
    mask_input: MaskInput = "input"
    output: Output = "residual"


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
    """

    base_width: int = 64
    max_width: int = 256
    num_layers: int = 3
    num_views: int = 3
    norm: Norm = "instance"
    weight_norm: WeightNorm = "none"


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
            finer scales then learn texture from the adversarial terms alone.
        rec_scales: with ``rec_where="coarse"``, how many of the coarsest scales keep it.
        rec_downsample: compare reconstruction and real image after average pooling by this
            factor (1: full resolution), so positions of nuclei are not regressed.
        rec_noise: noise map of the reconstruction pass: ``zeros`` (eq. 3) or SinGAN's
            ``fixed`` random map z* (the same draw every step, so the pass looks like a noisy one).
        feat: beta, feature matching (L1 over D features, eq. 4).
        perc: gamma, VGG19 perceptual loss; off when no weights file is configured.
        ce: alpha', cross-entropy of S on real labelled pairs.
        ce_synthetic: cross-entropy weight of synthetic pairs once they reach S.
        adv_s: weight of S's adversarial term (joint and ssl modes).
    """

    adversarial: AdvLoss = "lsgan"
    rec: float = 0.001
    rec_where: RecWhere = "all"
    rec_scales: int = 2
    rec_downsample: int = 1
    rec_noise: RecNoise = "zeros"
    feat: float = 10.0
    perc: float = 10.0
    ce: float = 1.0
    ce_synthetic: float = 0.03
    adv_s: float = 1.0

    def rec_active(self, n: int, num_scales: int) -> bool:
        """Whether scale n has a reconstruction term."""
        if self.rec_where not in ("all", "coarse"):
            raise ValueError(f"unknown rec_where {self.rec_where!r}; choose all or coarse")
        return self.rec > 0 and (self.rec_where == "all" or n >= num_scales - self.rec_scales)


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
        noise_amp_init: amplitude of the coarsest scale's noise.
        noise_amp_factor: finer scales: this times the RMSE of the coarser reconstruction.
        pseudo_positive_fraction: ssl: share of S-labelled unlabelled pairs used as D positives.
        labeled_fraction: ssl: keep this share of the labelled tiles labelled, the rest unlabelled.
        transductive: ssl: add evaluation images to the unlabelled pool.
        checkpoint_every: save a resumable checkpoint every this many steps.
        sample_every: write a sample grid every this many steps (and at every scale's end).
        color_jitter: strength of brightness/contrast/saturation/hue jitter on images.
        perceptual_weights: local VGG19 weights file; None turns the perceptual term off.
        device: ``auto`` (CUDA if present), ``cpu`` or ``cuda``.
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
    betas: tuple[float, float] = (0.5, 0.999)
    noise_amp_init: float = 1.0
    noise_amp_factor: float = 0.1
    pseudo_positive_fraction: float = 0.3
    labeled_fraction: float = 1.0
    transductive: bool = False
    checkpoint_every: int = 200
    sample_every: int = 500
    color_jitter: float = 0.05
    loss: LossConfig = field(default_factory=LossConfig)
    perceptual_weights: str | None = None
    device: str = "auto"
    seed: int = 0

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


# ---- baselines and experiments (issue 5) ----------------------------------------------
BASELINE_ARCHS = ("pix2pix", "pix2pixhd", "fcdensenet", "fcdensenet-pyramid", "mean-teacher")
ARCHS = ("ours", *BASELINE_ARCHS)


@dataclass(frozen=True)
class UNetConfig:
    """pix2pix U-Net generator (Isola et al. 2017); it takes no noise.

    Args:
        base_width: channels of the first down layer; doubles per level up to ``max_width``.
        depth: stride-2 levels (inputs are padded to a multiple of ``2 ** depth``).
        norm: normalisation inside the U-Net.
        dropout: dropout of the three up layers below the innermost (training only).
    """

    base_width: int = 64
    max_width: int = 512
    depth: int = 8
    norm: Norm = "batch"
    dropout: float = 0.5


@dataclass(frozen=True)
class GlobalGeneratorConfig:
    """pix2pixHD global generator (Wang et al. 2018): down, residual blocks, up; no noise.

    Args:
        base_width: channels of the first 7x7 conv; doubles per down step up to ``max_width``.
        num_down: stride-2 down steps (inputs are padded to a multiple of ``2 ** num_down``).
        num_blocks: residual blocks at the bottom.
        norm: normalisation after every conv but the last.
    """

    base_width: int = 64
    max_width: int = 1024
    num_down: int = 4
    num_blocks: int = 9
    norm: Norm = "instance"


@dataclass(frozen=True)
class MeanTeacherConfig:
    """Consistency SSL of eq. 9 (mean teacher, Tarvainen and Valpola 2017).

    Args:
        ema_decay: alpha in teacher = alpha * teacher + (1 - alpha) * student.
        consistency: lambda of eq. 9 (MSE between student and teacher softmax maps).
        rampup_steps: lambda ramps up as exp(-5 (1 - t)^2) over this many steps.
        input_noise: std of the Gaussian input noise (perturbations xi, xi'), image units.
    """

    ema_decay: float = 0.99
    consistency: float = 1.0
    rampup_steps: int = 1000
    input_noise: float = 0.1


@dataclass(frozen=True)
class BaselineModelConfig:
    """What inference needs to rebuild a baseline (stored in its serving file).

    Args:
        arch: one of ``BASELINE_ARCHS``; only the matching sub-config is used.
        num_classes: K.
        num_scales: ``fcdensenet-pyramid``: scales of the segmenter pyramid.
        unet: ``pix2pix`` generator. global_generator: ``pix2pixhd`` generator.
        discriminator: pix2pix: one PatchGAN (``num_views=1``); pix2pixHD: multi-scale.
        segmenter: the m-FC-DenseNet of the segmentation baselines.
    """

    arch: str = "pix2pix"
    num_classes: int = 2
    num_scales: int = 4
    unet: UNetConfig = field(default_factory=UNetConfig)
    global_generator: GlobalGeneratorConfig = field(default_factory=GlobalGeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)

    def pyramid(self) -> ModelConfig:
        """The ModelConfig of the ``fcdensenet-pyramid`` segmenter pyramid."""
        return ModelConfig(num_classes=self.num_classes, num_scales=self.num_scales,
                           segmenter=self.segmenter)


@dataclass(frozen=True)
class BaselineTrainConfig:
    """How a baseline trains: augmented whole tiles, Adam, ``steps`` updates (no resume).

    Args:
        tile_size, tile_overlap: training tiles (see :class:`TrainConfig`).
        steps: optimisation steps (``fcdensenet-pyramid``: per scale).
        batch_size: tiles per step (``mean-teacher``: as many unlabelled ones again).
        lr, lr_d: generator or segmenter, and discriminator learning rates; Adam ``betas``.
        adversarial: GAN loss (pix2pix: ``log``; pix2pixHD: ``lsgan``).
        l1, feat, perc: weights of L1 (pix2pix), feature matching and VGG (pix2pixHD).
        labeled_fraction, transductive: as in :class:`TrainConfig` (segmentation baselines).
        color_jitter, perceptual_weights, device, seed: as in :class:`TrainConfig`.
    """

    tile_size: int = 256
    tile_overlap: int = 32
    steps: int = 2000
    batch_size: int = 4
    lr: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    adversarial: AdvLoss = "lsgan"
    l1: float = 0.0
    feat: float = 0.0
    perc: float = 0.0
    mean_teacher: MeanTeacherConfig = field(default_factory=MeanTeacherConfig)
    labeled_fraction: float = 1.0
    transductive: bool = False
    color_jitter: float = 0.05
    perceptual_weights: str | None = None
    device: str = "auto"
    seed: int = 0


@dataclass(frozen=True)
class BaselinePreset:
    """A baseline's model and training configs."""

    model: BaselineModelConfig
    train: BaselineTrainConfig


def _baseline_presets(nets: dict[str, Any], train: BaselineTrainConfig,
                      steps: dict[str, int] | None = None) -> dict[str, BaselinePreset]:
    """Per-arch presets: shared nets and training, then each paper's losses and optimiser.

    Args:
        nets: BaselineModelConfig fields shared by every arch.
        train: training shared by every arch.
        steps: per-arch step counts (default ``train.steps``).
    """
    recipe = {"pix2pix": dict(adversarial="log", l1=100.0), "pix2pixhd": dict(feat=10.0, perc=10.0)}
    seg = dict(lr=5e-4)  # the paper's segmenter learning rate (section 3.4)
    out = {}
    for arch in BASELINE_ARCHS:
        disc = nets["discriminator"]
        if arch == "pix2pix":
            disc = dataclasses.replace(disc, num_views=1)  # one PatchGAN
        changes = {**recipe.get(arch, seg), "steps": (steps or {}).get(arch, train.steps)}
        out[arch] = BaselinePreset(BaselineModelConfig(arch=arch, **{**nets, "discriminator": disc}),
                                   dataclasses.replace(train, **changes))
    return out


_SMALL_NETS: dict[str, Any] = {
    "num_scales": 4, "unet": UNetConfig(32, 256, depth=7),
    "global_generator": GlobalGeneratorConfig(32, 256, num_down=3, num_blocks=6),
    "discriminator": DiscriminatorConfig(32, 128, num_layers=3, num_views=2),
    "segmenter": SegmenterConfig(),
}
#: A lighter m-FC-DenseNet for the CPU ssl budget (72 runs), about a quarter of the cost.
_SMALL_SSL_SEGMENTER = SegmenterConfig(first_width=24, growth_rate=8, down_layers=(3, 3, 3, 3),
                                       bottleneck_layers=3)

BASELINE_PRESETS: dict[str, dict[str, BaselinePreset]] = {
    # Seconds on a CPU: tests and smoke runs.
    "tiny": _baseline_presets(
        {"num_scales": 3, "unet": UNetConfig(8, 16, depth=4, dropout=0.0),
         "global_generator": GlobalGeneratorConfig(8, 32, num_down=2, num_blocks=2),
         "discriminator": DiscriminatorConfig(8, 16, num_layers=2, num_views=2),
         "segmenter": PRESETS["tiny"].model.segmenter},
        BaselineTrainConfig(tile_size=32, tile_overlap=8, steps=3, batch_size=2,
                            mean_teacher=MeanTeacherConfig(rampup_steps=2)),
    ),
    # CPU budget of the generation and supervised experiments (Gleason tiles shrunk 4x).
    "small": _baseline_presets(
        _SMALL_NETS,
        BaselineTrainConfig(tile_size=128, tile_overlap=32, steps=500, batch_size=4,
                            mean_teacher=MeanTeacherConfig(rampup_steps=200)),
        steps={"pix2pix": 2400, "pix2pixhd": 2400, "fcdensenet-pyramid": 250},
    ),
    # CPU budget of the ssl experiment (72 runs; tiles shrunk 8x, lighter segmenter).
    "small-ssl": _baseline_presets(
        {**_SMALL_NETS, "num_scales": 3, "segmenter": _SMALL_SSL_SEGMENTER},
        BaselineTrainConfig(tile_size=64, tile_overlap=16, steps=160, batch_size=4,
                            mean_teacher=MeanTeacherConfig(rampup_steps=60)),
        steps={"fcdensenet-pyramid": 50},
    ),
    # The papers' architectures; steps ~ 200 epochs of ~410 prostate training tiles (GPU).
    "paper": _baseline_presets(
        {"num_scales": 4, "unet": UNetConfig(), "global_generator": GlobalGeneratorConfig(),
         "discriminator": DiscriminatorConfig(64, 512, num_layers=3, num_views=2),
         "segmenter": SegmenterConfig()},
        BaselineTrainConfig(tile_size=512, tile_overlap=64, steps=80000, batch_size=4),
        steps={"pix2pix": 80000, "pix2pixhd": 80000, "fcdensenet-pyramid": 20000},
    ),
}


def baseline_preset(arch: str, name: str) -> BaselinePreset:
    """A baseline preset by arch and budget name, with errors that list the known ones."""
    if arch not in BASELINE_ARCHS:
        raise ValueError(f"unknown baseline {arch!r}; choose one of {', '.join(BASELINE_ARCHS)}")
    if name not in BASELINE_PRESETS:
        raise ValueError(f"unknown baseline preset {name!r}; choose one of {', '.join(BASELINE_PRESETS)}")
    return BASELINE_PRESETS[name][arch]


@dataclass(frozen=True)
class ExperimentBudget:
    """Sizes and steps of one experiment at one ``histosynth experiment --budget``.

    Args:
        ours: our pyramid's preset (the experiment sets mode, seed and fractions).
        baselines: the ``BASELINE_PRESETS`` key of the compared methods.
        downscale: images and masks are shrunk by this factor first (CPU budgets).
        holdout: images held out when none are named (the last names in sorted order).
        crop: generation: held-out images are judged as crops of this side (None: whole).
        variants: generation: images generated per held-out crop.
        fractions: ssl: labelled fractions.
        seeds: ssl: runs per fraction (``--seeds`` overrides).
    """

    ours: Preset
    baselines: str
    downscale: int = 1
    holdout: int = 2
    crop: int | None = 1024
    variants: int = 8
    fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    seeds: int = 5


_TOY = ExperimentBudget(
    ours=Preset(PRESETS["tiny"].model, dataclasses.replace(
        PRESETS["tiny"].train, tile_size=32, tile_overlap=8, crop_size=16, steps_per_scale=2,
        holdout_steps=1)),
    baselines="tiny", holdout=1, crop=32, variants=2, fractions=(0.4, 0.8), seeds=1)
_SMALL_OURS = ModelConfig(num_scales=4, discriminator=DiscriminatorConfig(32, 128, num_views=2))
_SMALL_TRAIN = TrainConfig(tile_size=128, tile_overlap=32, crop_size=128, batch_sizes=(8, 6, 4, 4),
                           steps_per_scale=250, holdout_steps=120, checkpoint_every=100,
                           sample_every=10**9)
_PAPER = ExperimentBudget(ours=PRESETS["paper"], baselines="paper", crop=1024, variants=10)

#: ``EXPERIMENT_BUDGETS[budget][experiment]``; small = about an hour each on a 2-core CPU.
EXPERIMENT_BUDGETS: dict[str, dict[str, ExperimentBudget]] = {
    "toy": {"generation": _TOY, "supervised": _TOY, "ssl": _TOY},
    "small": {
        "generation": ExperimentBudget(
            Preset(_SMALL_OURS, dataclasses.replace(_SMALL_TRAIN, steps_per_scale=600)),
            "small", downscale=4, crop=128, variants=4),
        "supervised": ExperimentBudget(Preset(_SMALL_OURS, _SMALL_TRAIN), "small", downscale=4),
        "ssl": ExperimentBudget(
            Preset(dataclasses.replace(_SMALL_OURS, num_scales=3, segmenter=_SMALL_SSL_SEGMENTER),
                   dataclasses.replace(_SMALL_TRAIN, tile_size=64, tile_overlap=16, crop_size=64,
                                       batch_sizes=(8, 6, 4), steps_per_scale=50, holdout_steps=25)),
            "small-ssl", downscale=8, seeds=3),
    },
    "paper": {"generation": _PAPER, "supervised": _PAPER, "ssl": _PAPER},
}


# ---- realism measures (model/realism.py) ---------------------------------------------------


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
    """

    patch: int = 64
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 16
    test_stride: int = 64


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
