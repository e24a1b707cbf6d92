"""Losses: known answers for the GAN terms, perceptual loss with a local VGG19 file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model.config import AdvLoss, LossConfig
from model.training import losses
from model.training.losses import (
    DiscOutput,
    PerceptualLoss,
    VGG19Features,
    adversarial,
    cross_entropy,
    feature_matching,
    load_perceptual,
    reconstruction,
)


def _out(value: float, views: int = 2) -> DiscOutput:
    return [
        (torch.full((2, 1, 3, 3), value), [torch.full((2, 4, 5, 5), value)]) for _ in range(views)
    ]


@pytest.mark.parametrize(
    ("kind", "logit", "real", "for_d", "expected"),
    [
        ("lsgan", 1.0, True, True, 0.0),
        ("lsgan", 0.0, False, True, 0.0),
        ("lsgan", 0.0, True, False, 1.0),
        ("lsgan", 3.0, False, True, 9.0),
        ("log", 0.0, True, True, math.log(2)),
        ("log", 0.0, False, False, math.log(2)),
        ("log", 2.0, True, True, math.log1p(math.exp(-2.0))),
        ("hinge", 1.0, True, True, 0.0),
        ("hinge", -1.0, False, True, 0.0),
        ("hinge", 0.0, True, True, 1.0),
        ("hinge", 0.5, False, True, 1.5),
        ("hinge", 2.0, True, False, -2.0),
    ],
)
def test_adversarial_known_answers(
    kind: AdvLoss, logit: float, real: bool, for_d: bool, expected: float
) -> None:
    loss = adversarial(_out(logit), real, kind, for_d)
    assert loss.shape == () and loss.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("kind", ["lsgan", "log", "hinge"])
def test_correct_targets_give_lower_discriminator_loss(kind: AdvLoss) -> None:
    real_like, fake_like = _out(2.0), _out(-2.0)
    right = adversarial(real_like, True, kind, True) + adversarial(fake_like, False, kind, True)
    wrong = adversarial(real_like, False, kind, True) + adversarial(fake_like, True, kind, True)
    assert right < wrong
    # the generator's loss is lower when D thinks its output is real
    assert adversarial(real_like, True, kind, False) < adversarial(fake_like, True, kind, False)


def test_adversarial_means_over_views() -> None:
    out = [(torch.zeros(1, 1, 2, 2), []), (torch.ones(1, 1, 2, 2), [])]
    assert adversarial(out, True, "lsgan", True).item() == pytest.approx(0.5)


def test_adversarial_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        adversarial(_out(0.0), True, "wgan", True)  # type: ignore[arg-type]


def test_feature_matching() -> None:
    assert feature_matching(_out(0.3), _out(0.3)).item() == 0.0
    # 2 views x 1 layer: weight 4 / 1 / 2 each, L1 = 1 -> 4
    assert feature_matching(_out(0.0), _out(1.0)).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="matching views"):
        feature_matching(_out(0.0, views=2), _out(0.0, views=3))


def test_feature_matching_detaches_real() -> None:
    real_feat = torch.ones(1, 2, 3, 3, requires_grad=True)
    fake_feat = torch.zeros(1, 2, 3, 3, requires_grad=True)
    loss = feature_matching([(torch.zeros(1), [real_feat])], [(torch.zeros(1), [fake_feat])])
    loss.backward()
    assert real_feat.grad is None and fake_feat.grad is not None


def test_reconstruction_and_cross_entropy() -> None:
    x = torch.zeros(1, 3, 4, 4)
    assert reconstruction(x, x).item() == 0.0
    assert reconstruction(x, x + 2).item() == pytest.approx(4.0)
    logits = torch.zeros(2, 4, 3, 3)
    labels = torch.randint(0, 4, (2, 3, 3))
    assert cross_entropy(logits, labels).item() == pytest.approx(math.log(4))
    assert cross_entropy(logits, labels, weight=0.03).item() == pytest.approx(0.03 * math.log(4))


# ---- perceptual --------------------------------------------------------------------
@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-style state dict (features.N.* and classifier.*) with random weights."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path


def test_vgg_layer_numbering_matches_torchvision() -> None:
    keys = VGG19Features().features.state_dict().keys()
    convs = sorted({int(k.split(".")[0]) for k in keys})
    assert convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert len(VGG19Features().features) == 37


def test_load_perceptual_none() -> None:
    assert load_perceptual(None) is None


def test_loads_torchvision_keys_and_freezes(vgg_file: Path) -> None:
    loss = load_perceptual(str(vgg_file))
    assert isinstance(loss, PerceptualLoss)
    saved = torch.load(vgg_file, weights_only=True)
    assert torch.equal(loss.vgg.features[34].weight, saved["features.34.weight"])
    assert not any(p.requires_grad for p in loss.parameters())


def test_loads_plain_keys(vgg_file: Path, tmp_path: Path) -> None:
    saved = torch.load(vgg_file, weights_only=True)
    plain = {k.removeprefix("features."): v for k, v in saved.items() if k.startswith("features.")}
    torch.save(plain, tmp_path / "plain.pth")
    vgg = VGG19Features.from_file(tmp_path / "plain.pth")
    assert torch.equal(vgg.features[0].bias, saved["features.0.bias"])


def test_perceptual_loss_values(vgg_file: Path) -> None:
    loss = load_perceptual(vgg_file)
    assert loss is not None
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    y = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_(True)
    assert loss(x, x).item() == 0.0
    value = loss(y, x)
    assert value.item() > 0
    value.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


@pytest.mark.parametrize(("h", "w"), [(8, 8), (9, 5)])
def test_vgg_features_small_inputs(h: int, w: int) -> None:
    feats = VGG19Features()(torch.zeros(1, 3, h, w))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]


def _bad_files(tmp: Path) -> list[tuple[Path, str]]:
    (tmp / "corrupt.pth").write_bytes(b"not a torch file")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp / "other.pth")
    wrong = {k: torch.zeros(1) for k in VGG19Features().features.state_dict()}
    torch.save(wrong, tmp / "shapes.pth")
    torch.save([1, 2, 3], tmp / "list.pth")
    return [
        (tmp / "missing.pth", "does not exist"),
        (tmp / "corrupt.pth", "cannot read"),
        (tmp / "other.pth", "missing keys 0.bias, 0.weight"),
        (tmp / "shapes.pth", "wrong shapes"),
        (tmp / "list.pth", "not a state dict"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_load_errors_name_the_file(case: int, tmp_path: Path) -> None:
    path, match = _bad_files(tmp_path)[case]
    with pytest.raises(ValueError, match=match) as info:
        load_perceptual(str(path))
    assert str(path) in str(info.value)


def test_reconstruction_on_a_downsampled_output_ignores_positions_inside_a_block() -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 0, 0] = 1.0  # a "nucleus" in the top-left 2x2 block
    moved = torch.zeros(1, 1, 4, 4)
    moved[0, 0, 1, 1] = 1.0  # same block, other pixel
    assert losses.reconstruction(moved, target) > 0
    assert float(losses.reconstruction(moved, target, downsample=2)) == 0.0
    with pytest.raises(ValueError, match="rec_downsample"):
        losses.reconstruction(moved, target, downsample=0)


@pytest.mark.parametrize(
    ("where", "rec", "active"),
    [("all", 1.0, [True] * 5), ("coarse", 1.0, [False, False, False, True, True]), ("all", 0.0, [False] * 5),
     ("split", 1.0, [True] * 5)],
)
def test_reconstruction_scales(where: str, rec: float, active: list[bool]) -> None:
    cfg = LossConfig(rec=rec, rec_where=where, rec_scales=2)  # type: ignore[arg-type]
    assert [cfg.rec_active(n, 5) for n in range(5)] == active


@pytest.mark.parametrize(
    ("where", "pooling"),
    [("all", [8] * 5), ("coarse", [8] * 5), ("split", [8, 8, 8, 1, 1])],
)
def test_reconstruction_pooling_per_scale(where: str, pooling: list[int]) -> None:
    """``split``: the coarsest rec_scales compare at full resolution, the finer ones pooled."""
    cfg = LossConfig(rec=1.0, rec_where=where, rec_scales=2, rec_downsample=8)  # type: ignore[arg-type]
    assert [cfg.rec_pooling(n, 5) for n in range(5)] == pooling
    with pytest.raises(ValueError, match="split"):
        LossConfig(rec_where="nowhere").rec_active(0, 5)  # type: ignore[arg-type]


def test_read_losses_means_each_loss_over_the_steps_and_names_a_non_finite_one() -> None:
    from model.training.steps import read_losses

    steps = [{"d": torch.tensor(1.0), "g": torch.tensor(2.0)}, {"d": torch.tensor(3.0)}]
    assert read_losses(steps) == {"d": 2.0, "g": 2.0}  # a loss missing in a step: mean of the others
    assert read_losses([]) == {}
    with pytest.raises(FloatingPointError, match="loss g became non-finite"):
        read_losses([{"d": torch.tensor(1.0), "g": torch.tensor(float("nan"))}])


def test_r1_penalty_is_the_squared_input_gradient_of_the_logits() -> None:
    """For a linear D, logits = sum(w * x) per view: the gradient is w for every sample, so the
    penalty is |w|^2 (two views: |2 w|^2); it trains D (a gradient reaches w)."""
    w = torch.randn(1, 3, 4, 4, requires_grad=True)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (w * x).sum(dim=(1, 2, 3), keepdim=True)  # (5, 1, 1, 1)
    one = losses.r1_penalty([(logits, [])], x)
    assert one.item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)
    two = losses.r1_penalty([(logits, []), (logits, [])], x)
    assert two.item() == pytest.approx(4 * w.pow(2).sum().item(), rel=1e-5)
    one.backward()
    assert w.grad is not None and torch.allclose(w.grad, 2 * w.detach())
    with pytest.raises(ValueError, match="requires_grad"):
        losses.r1_penalty([(logits, [])], x.detach())


def test_mode_seeking_ratio_is_zero_when_g_ignores_noise_and_grows_when_it_passes_it() -> None:
    y, up = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    z = torch.randn(2, 3, 8, 8)

    def blind(y: torch.Tensor, z: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return up + y.mean(1, keepdim=True)

    def passes(y: torch.Tensor, z: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return up + 0.5 * z

    assert losses.mode_seeking_ratio(blind, y, z, up, blind(y, z, up)).item() == 0.0
    assert losses.mode_seeking_ratio(passes, y, z, up, passes(y, z, up)).item() == pytest.approx(0.5)



def _patch(fake: torch.Tensor, real: torch.Tensor, labels: torch.Tensor, size: int = 1, p: int = 16) -> float:
    torch.manual_seed(0)  # the same directions for every call
    return losses.patch_distribution(fake, real, labels, size, p).item()


def test_patch_distribution_of_single_pixels_compares_sorted_values_class_by_class() -> None:
    """With 1x1 patches of one channel every direction is +1 or -1: the loss is the squared
    difference of the sorted values within each class, whatever their places."""
    real = torch.arange(8.0).view(1, 1, 2, 4)
    labels = torch.tensor([[[0, 0, 0, 0], [1, 1, 1, 1]]])
    shuffled = real.clone()
    shuffled[0, 0, 0] = real[0, 0, 0].flip(0)  # class 0's values in another order
    assert _patch(shuffled, real, labels) == 0.0
    assert _patch(real + 1, real, labels) == pytest.approx(1.0)
    swapped = real.clone()
    swapped[0, 0, 0, 0], swapped[0, 0, 1, 0] = real[0, 0, 1, 0], real[0, 0, 0, 0]  # 0 and 4 change class
    # class 0 sorts to 1..4 against 0..3 (1 each), class 1 to 0,5,6,7 against 4..7 (16), of 8 patches
    assert _patch(swapped, real, labels) == pytest.approx((4 * 1 + 16) / 8)


def test_patch_distribution_ignores_where_structure_is_but_not_its_loss() -> None:
    """A texture moved by a few pixels keeps its patches; blurred it loses them."""
    torch.manual_seed(1)
    texture = torch.rand(2, 3, 40, 40)
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    real = texture[..., :32, :32]
    moved = texture[..., 3:35, 5:37]
    blurred = torch.nn.functional.avg_pool2d(texture, 3, stride=1, padding=1)[..., :32, :32]
    assert _patch(moved, real, labels, size=5) < 0.1 * _patch(blurred, real, labels, size=5)


def test_patch_distribution_trains_the_fake_image_only() -> None:
    fake = torch.rand(1, 3, 9, 9, requires_grad=True)
    real = torch.rand(1, 3, 9, 9, requires_grad=True)
    loss = losses.patch_distribution(fake, real, torch.zeros(1, 9, 9, dtype=torch.long), 3, 8)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert real.grad is None


@pytest.mark.parametrize(("size", "p", "side", "match"), [(4, 8, 9, "odd"), (3, 0, 9, "projections"),
                                                          (11, 8, 9, "at least")])
def test_patch_distribution_errors(size: int, p: int, side: int, match: str) -> None:
    x = torch.rand(1, 3, side, side)
    with pytest.raises(ValueError, match=match):
        losses.patch_distribution(x, x, torch.zeros(1, side, side, dtype=torch.long), size, p)


@pytest.mark.parametrize(("field", "value"), [("patch", -1.0), ("patch_size", 6), ("patch_projections", 0)])
def test_loss_config_refuses_bad_patch_options(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        LossConfig(**{field: value})
