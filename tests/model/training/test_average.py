"""The generator's weight average: the ramped decay, the update, swapping it in and out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.training.average import WeightAverage, ramped_decay


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_the_decay_ramps_up_to_its_cap() -> None:
    values = [float(ramped_decay(0.99, torch.tensor(float(t)))) for t in (0, 1, 10, 100, 10_000)]
    assert values == pytest.approx([0.1, 2 / 11, 11 / 20, 101 / 110, 0.99], abs=1e-6)


def test_each_update_folds_the_weights_in_with_the_ramped_decay() -> None:
    net = _net()
    average = WeightAverage(net, 0.9)
    expected = [p.detach().clone() for p in net.parameters()]
    average.update(net)  # the first update copies
    for t in range(1, 30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        keep = min(0.9, (1 + t) / (10 + t))
        expected = [keep * e + (1 - keep) * p.detach() for e, p in zip(expected, net.parameters(), strict=True)]
        average.update(net)
    assert average.updates == 30
    for got, want in zip(average.averaged.module.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_applied_swaps_the_average_in_and_the_trained_weights_back() -> None:
    net = _net()
    average = WeightAverage(net, 0.9)
    average.update(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    trained = [p.detach().clone() for p in net.parameters()]
    with average.applied(net):
        for got, want in zip(net.parameters(), average.averaged.module.parameters(), strict=True):
            assert torch.equal(got, want)
    for got, want in zip(net.parameters(), trained, strict=True):
        assert torch.equal(got, want)


def test_state_round_trip_continues_the_same_average() -> None:
    a, b = WeightAverage(_net(), 0.9), WeightAverage(_net(), 0.9)
    net = _net()
    for _ in range(3):
        a.update(net)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    a.update(net)
    b.update(net)
    for x, y in zip(a.averaged.module.parameters(), b.averaged.module.parameters(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_the_open_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="ema must be in"):
        WeightAverage(_net(), decay)
