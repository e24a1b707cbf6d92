"""Images and masks as tensors: conversion, pyramids, array padding, noise maps (model/tensors.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.tensors import (
    image_pyramid,
    mask_pyramid,
    mask_pyramid_from,
    noise_maps,
    pad_array,
    pad_array_to_multiple,
    to_tensor,
    to_uint8,
)

RGB = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)


def test_to_tensor_and_back() -> None:
    x = to_tensor(RGB)
    assert x.shape == (3, 6, 5) and x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(to_uint8(x), RGB)
    assert to_uint8(torch.stack([x, x * 3])).shape == (2, 6, 5, 3)
    assert to_uint8(torch.full((3, 1, 1), 5.0)).max() == 255
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(RGB.astype(np.float32))


@pytest.mark.parametrize("h, w, scales", [(16, 16, 3), (32, 24, 4), (8, 8, 1)])
def test_pyramids(h: int, w: int, scales: int) -> None:
    xs = image_pyramid(torch.zeros(2, 3, h, w), scales)
    assert [x.shape for x in xs] == [(2, 3, h >> n, w >> n) for n in range(scales)]
    labels = torch.randint(0, 4, (2, h, w), generator=torch.Generator().manual_seed(0))
    onehots, ys = mask_pyramid(labels, 4, scales)
    assert torch.equal(ys[0], labels)
    for n, (o, y) in enumerate(zip(onehots, ys, strict=True)):
        assert o.shape == (2, 4, h >> n, w >> n) and y.shape == (2, h >> n, w >> n)
        torch.testing.assert_close(o.sum(1), torch.ones_like(o[:, 0]))
        assert torch.equal(o.argmax(1), y)


@pytest.mark.parametrize("h, w, scales", [(64, 64, 5), (48, 40, 4), (17, 18, 2)])
def test_mask_pyramids_from_a_scale_equal_the_full_pyramids(h: int, w: int, scales: int) -> None:
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (2, h, w), generator=gen).to(torch.uint8)
    full_y, full_labs = mask_pyramid(labels, 3, scales)
    for start in range(scales):
        ys, labs = mask_pyramid_from(labels, 3, scales, start)
        assert ys[:start] == labs[:start] == [None] * start
        for n in range(start, scales):
            assert torch.equal(ys[n], full_y[n]) and torch.equal(labs[n], full_labs[n])  # exact


def test_pyramid_errors() -> None:
    with pytest.raises(ValueError, match="0..1"):
        mask_pyramid_from(torch.full((1, 4, 4), 2), 2, 2, 1)
    with pytest.raises(ValueError, match="too small"):
        image_pyramid(torch.zeros(1, 3, 4, 4), 4)
    with pytest.raises(ValueError, match="0..1"):
        mask_pyramid(torch.full((1, 4, 4), 2), 2, 1)


@pytest.mark.parametrize("h, w, factor", [(6, 5, 4), (8, 8, 4), (3, 2, 8)])
def test_pad_array_to_multiple(h: int, w: int, factor: int) -> None:
    a = np.arange(h * w).reshape(h, w)
    out = pad_array_to_multiple(a, factor)
    assert out.shape[0] % factor == 0 and out.shape[1] % factor == 0
    np.testing.assert_array_equal(out[:h, :w], a)
    if out.shape[0] > h and h > out.shape[0] - h:
        np.testing.assert_array_equal(out[h, :w], a[h - 2])  # reflect: the edge row is not repeated


def test_pad_array_centred() -> None:
    out = pad_array(RGB, (8, 9), "reflect", centred=True)
    assert out.shape == (8, 9, 3)
    np.testing.assert_array_equal(out[1:7, 2:7], RGB)
    assert pad_array(RGB, (4, 4)) is RGB


def test_noise_maps_order_and_stop() -> None:
    sizes = [(8, 8), (4, 4), (2, 2)]
    fine = noise_maps(torch.Generator().manual_seed(0), 2, [3, 3, 1], sizes, stop_at=1)
    assert fine[0] is None and fine[1].shape == (2, 3, 4, 4) and fine[2].shape == (2, 1, 2, 2)
    coarse = noise_maps(torch.Generator().manual_seed(0), 2, [3, 3, 1], sizes, coarse_first=True)
    first = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(coarse[2], first) and not torch.equal(fine[2], first)
