"""Presets of model/config.py."""

from __future__ import annotations

import dataclasses

from model.config import PRESETS


def test_realistic_fine_continues_realistic_files() -> None:
    """`realistic-fine` trains the fine scales of a `realistic` file (--init-from): same G and S."""
    coarse, fine = PRESETS["realistic"].model, PRESETS["realistic-fine"].model
    assert dataclasses.replace(fine, discriminator=coarse.discriminator) == coarse
    loss = PRESETS["realistic-fine"].train.loss
    assert loss.feat == 0 and loss.rec_downsample > 1 and loss.rec_active(0, fine.num_scales)
