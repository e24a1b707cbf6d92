"""Configs and presets of the paper's baselines: pix2pix, pix2pixHD, m-FC-DenseNet, mean teacher.

Frozen dataclasses like :mod:`model.config` (whose blocks they reuse); every baseline serving
file stores its :class:`BaselineModelConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from model.config import (
    PRESETS,
    AdvLoss,
    DiscriminatorConfig,
    ModelConfig,
    Norm,
    SegmenterConfig,
)

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
SMALL_SSL_SEGMENTER = SegmenterConfig(first_width=24, growth_rate=8, down_layers=(3, 3, 3, 3),
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
        {**_SMALL_NETS, "num_scales": 3, "segmenter": SMALL_SSL_SEGMENTER},
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
class JudgeConfig:
    """The independent reference segmenter that judges mask consistency in ``evaluate``.

    A baseline segmenter (not the model's own S_0, which sees G's output while training),
    trained by :func:`model.baselines.train.train_baseline` on the real training tiles only,
    shrunk by ``downscale`` (glands, not nuclei, decide the classes; a 1024 crop becomes 256).

    Args:
        arch: a segmentation baseline (``fcdensenet`` or ``fcdensenet-pyramid``).
        preset: ``BASELINE_PRESETS`` key of its networks and optimiser.
        downscale: training tiles and judged images are shrunk by this factor first.
        tile_size: training tile side after the downscale.
        steps: optimisation steps (per scale for the pyramid).
        seed: seeds the tiles and the network.
    """

    arch: str = "fcdensenet"
    preset: str = "small-ssl"
    downscale: int = 4
    tile_size: int = 64
    steps: int = 600
    seed: int = 0
