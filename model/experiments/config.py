"""Budgets of ``histosynth experiment``: sizes and steps of each comparison per budget."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from model.baselines.config import SMALL_SSL_SEGMENTER
from model.config import (
    PRESETS,
    DiscriminatorConfig,
    ModelConfig,
    Preset,
    TrainConfig,
    TwoSampleConfig,
)


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
        two_sample: generation: the classifier two-sample test's budget.
    """

    ours: Preset
    baselines: str
    downscale: int = 1
    holdout: int = 2
    crop: int | None = 1024
    variants: int = 8
    fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    seeds: int = 5
    two_sample: TwoSampleConfig = field(default_factory=TwoSampleConfig)


_TOY = ExperimentBudget(
    ours=Preset(PRESETS["tiny"].model, dataclasses.replace(
        PRESETS["tiny"].train, tile_size=32, tile_overlap=8, crop_size=16, steps_per_scale=2,
        holdout_steps=1)),
    baselines="tiny", holdout=1, crop=32, variants=2, fractions=(0.4, 0.8), seeds=1,
    two_sample=TwoSampleConfig(patch=16, steps=10, batch_size=8, width=4, test_stride=16))
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
            Preset(dataclasses.replace(_SMALL_OURS, num_scales=3, segmenter=SMALL_SSL_SEGMENTER),
                   dataclasses.replace(_SMALL_TRAIN, tile_size=64, tile_overlap=16, crop_size=64,
                                       batch_sizes=(8, 6, 4), steps_per_scale=50, holdout_steps=25)),
            "small-ssl", downscale=8, seeds=3),
    },
    "paper": {"generation": _PAPER, "supervised": _PAPER, "ssl": _PAPER},
}
