"""DiffAugment for the discriminator: same transform on image and mask, real and fake alike."""

from __future__ import annotations

import pytest
import torch

from model.nets.blocks import one_hot
from model.training.augment import cutout, diff_augment, translate


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(0, 3, (4, 16, 16))
    mask = one_hot(labels, 3)
    image = mask.clone() * 2 - 1  # an image that is its mask, pixel for pixel
    return image, mask


@pytest.mark.parametrize("policies", [("translation",), ("cutout",), ("translation", "cutout")])
def test_image_and_mask_move_together(policies: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    image, mask = _pair()
    img_a, mask_a = diff_augment([image, mask], policies)
    assert img_a.shape == image.shape and mask_a.shape == mask.shape
    kept = mask_a.sum(1, keepdim=True) > 0  # pixels not filled by padding or cutout
    assert torch.equal((img_a + 1) / 2 * kept, mask_a * kept)
    assert not torch.equal(mask_a, mask)


def test_translation_shifts_by_at_most_an_eighth() -> None:
    torch.manual_seed(1)
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(8, 1, 1, 1) + 1
    out = translate(x)
    for sample in out:
        nz = sample[0].nonzero()
        assert int((sample[0] == 0).sum()) in (0, 8, 15)  # one row and/or column filled
        assert len(nz) >= 49


def test_cutout_zeros_a_square_of_half_the_side() -> None:
    torch.manual_seed(2)
    x = torch.ones(16, 2, 16, 16)
    out = cutout(x)
    zeros = (out[:, 0] == 0).sum((1, 2))
    assert zeros.max() == 64 and zeros.min() >= 16  # 8x8, clipped at the borders
    assert torch.equal(out[:, 0], out[:, 1])


def test_no_policy_is_the_identity_and_unknown_is_an_error() -> None:
    image, mask = _pair()
    assert diff_augment([image, mask], ()) == [image, mask]
    with pytest.raises(ValueError, match="augment policy"):
        diff_augment([image, mask], ("color",))


def test_gradient_flows_through() -> None:
    image = torch.randn(2, 3, 8, 8, requires_grad=True)
    out, _ = diff_augment([image, torch.ones(2, 1, 8, 8)], ("translation", "cutout"))
    out.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
