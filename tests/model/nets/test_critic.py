"""The mask critic: any input size, the receptive field it states, and config errors."""

from __future__ import annotations

import pytest
import torch

from model.config import CriticConfig
from model.nets.critic import MaskCritic

SMALL = CriticConfig(width=4, dilations=(1, 2, 4))


@pytest.mark.parametrize(("k", "h", "w"), [(2, 32, 32), (4, 17, 9), (3, 1, 1)])
def test_logits_keep_the_input_size(k: int, h: int, w: int) -> None:
    out = MaskCritic(k, SMALL)(torch.randn(2, 3, h, w))
    assert out.shape == (2, k, h, w)


@pytest.mark.parametrize("cfg", [SMALL, CriticConfig()])
def test_receptive_field_is_what_it_states(cfg: CriticConfig) -> None:
    torch.manual_seed(0)
    critic = MaskCritic(2, cfg)
    side = MaskCritic.receptive_field(cfg)
    x = torch.randn(1, 3, side + 8, side + 8, requires_grad=True)
    centre = (side + 8) // 2
    critic(x)[0, 0, centre, centre].backward()
    assert x.grad is not None
    rows = torch.nonzero(x.grad.abs().sum((0, 1, 3)) > 0).flatten()
    assert rows.max() - rows.min() + 1 == side


@pytest.mark.parametrize(("cfg", "message"), [(CriticConfig(width=0), "width"),
                                              (CriticConfig(dilations=()), "dilations"),
                                              (CriticConfig(dilations=(1, 0)), "dilations")])
def test_bad_configs_are_refused(cfg: CriticConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MaskCritic(2, cfg)
