"""Presets of model/config.py."""

from __future__ import annotations

import dataclasses

import pytest

from model.config import PRESETS, TrainConfig


def test_realistic_fine_continues_realistic_files() -> None:
    """`realistic-fine` trains the fine scales of a `realistic` file (--init-from): same G and S."""
    coarse, fine = PRESETS["realistic"].model, PRESETS["realistic-fine"].model
    assert dataclasses.replace(fine, discriminator=coarse.discriminator) == coarse
    loss = PRESETS["realistic-fine"].train.loss
    assert loss.feat == 0 and loss.rec_downsample > 1 and loss.rec_active(0, fine.num_scales)


def test_lr_decay_falls_linearly_over_the_last_share_of_a_scale() -> None:
    cfg = TrainConfig(steps_per_scale=100, lr_decay=0.5)
    assert [cfg.lr_factor(s) for s in (0, 49, 50, 75, 99)] == [1.0, 1.0, 1.0, 0.5, 0.02]
    assert TrainConfig(steps_per_scale=100).lr_factor(99) == 1.0  # off by default
    with pytest.raises(ValueError, match="lr_decay must be in"):
        TrainConfig(lr_decay=1.5).lr_factor(0)
