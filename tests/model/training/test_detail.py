"""The colour axes of real fine detail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.training.detail import detail, detail_axes


def _striped(direction: np.ndarray, seed: int, size: int = 64) -> np.ndarray:
    """A grey-pink image whose detail varies along ``direction`` only (plus rounding)."""
    rng = np.random.default_rng(seed)
    base = np.array([200.0, 140.0, 190.0])
    pattern = rng.normal(0, 1, (size, size))  # finest detail everywhere
    image = base + 25 * pattern[..., None] * direction
    return np.clip(image, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("output", ["tanh", "residual"])
def test_the_first_axis_is_the_direction_the_detail_varies_along(output: str) -> None:
    direction = np.array([0.6, 0.7, 0.39])
    direction /= np.linalg.norm(direction)
    axes, shares = detail_axes([_striped(direction, 0), _striped(direction, 1)], output)
    assert torch.allclose(axes.T @ axes, torch.eye(3), atol=1e-5)  # orthonormal columns
    expected = direction
    if output == "tanh":  # atanh stretches each channel by 1 / (1 - x^2) about the base colour
        x = np.array([200.0, 140.0, 190.0]) / 127.5 - 1
        expected = direction / (1 - x**2)
    expected = torch.from_numpy(expected / np.linalg.norm(expected)).float()
    assert abs(float(axes[:, 0] @ expected)) > 0.99
    assert float(shares[0]) > 0.97 and shares.sum() == pytest.approx(1.0)
    assert list(shares) == sorted(shares, reverse=True)
    assert all(axes[:, k].abs().argmax() == axes[:, k].argmax() for k in range(3))  # largest part positive


def test_grey_detail_gives_the_grey_axis_and_flat_images_no_detail() -> None:
    axes, _ = detail_axes([_striped(np.ones(3) / np.sqrt(3), 2)], "residual")
    assert torch.allclose(axes[:, 0], torch.full((3,), 3 ** -0.5), atol=0.02)
    flat = np.full((16, 18, 3), 120, np.uint8)
    values, inside = detail(flat, "residual")
    assert values.abs().max() < 1e-6 and inside.all()
    assert detail(flat[:15, :17], "residual", pool=2)[0].shape == (3, 14, 16)  # cut to the pooling grid
    white = flat.copy()
    white[:8] = 255
    assert not detail(white, "tanh", limit=0.9)[1][:6].any()  # saturated pixels are left out
    assert detail(white, "tanh", limit=0.9)[1][10:].all()
    with pytest.raises(ValueError, match="at least one image"):
        detail_axes([])
