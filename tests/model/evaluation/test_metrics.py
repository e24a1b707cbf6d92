"""Metrics against hand-computed answers and library references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.metrics import structural_similarity

from model.evaluation import metrics as M
from model.evaluation.similarity import _wasserstein_1d

# ---- segmentation scores -------------------------------------------------------------------

TARGET = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
PRED = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 2, 2], [2, 2, 0, 2]])


def test_confusion_matrix_by_hand() -> None:
    assert M.confusion_matrix(PRED, TARGET, 3).tolist() == [[3, 1, 0], [0, 4, 0], [1, 0, 7]]


def test_scores_by_hand() -> None:
    s = M.segmentation_scores(PRED, TARGET, 3, ["a", "b", "c"])
    # J = TP / (row + col - TP): 3/5, 4/5, 7/8
    assert s["jaccard"] == pytest.approx({"a": 0.6, "b": 0.8, "c": 0.875})
    assert s["miou"] == pytest.approx((0.6 + 0.8 + 0.875) / 3)
    assert s["opa"] == pytest.approx(14 / 16)
    assert s["sma"] == pytest.approx((3 / 4 + 4 / 4 + 7 / 8) / 3)


def test_absent_class_is_none_and_left_out() -> None:
    s = M.segmentation_scores(PRED, TARGET, 4)
    assert s["jaccard"]["3"] is None and s["recall"]["3"] is None
    assert s["miou"] == pytest.approx((0.6 + 0.8 + 0.875) / 3)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_perfect_prediction(k: int) -> None:
    target = np.arange(k * 4).reshape(4, k) % k
    s = M.segmentation_scores(target, target, k)
    assert s["miou"] == s["opa"] == s["sma"] == 1.0


def test_list_accumulates_one_matrix() -> None:
    both = M.segmentation_scores([PRED, TARGET], [TARGET, TARGET], 3)
    cm = M.confusion_matrix(PRED, TARGET, 3) + M.confusion_matrix(TARGET, TARGET, 3)
    assert both["confusion"] == cm.tolist()


@pytest.mark.parametrize("pred", [PRED + 1, PRED[:3]])
def test_bad_inputs(pred: np.ndarray) -> None:
    with pytest.raises(ValueError):
        M.segmentation_scores(pred, TARGET, 3)


def test_mask_consistency_with_a_perfect_segmenter() -> None:
    masks = [TARGET, PRED]
    images = [np.repeat((m * 100).astype(np.uint8)[..., None], 3, axis=2) for m in masks]
    s = M.mask_consistency(lambda im: im[..., 0] // 100, images, masks, 3)
    assert s["miou"] == 1.0


# ---- GlaS object metrics -------------------------------------------------------------------


def _square(top: int, left: int, side: int = 4, shape: tuple[int, int] = (16, 16)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + side, left : left + side] = True
    return m


def test_object_f1_one_of_two_found() -> None:
    gt = _square(0, 0) | _square(8, 8)
    assert M.object_f1(_square(0, 0), gt) == pytest.approx(2 / 3)  # TP 1, FP 0, FN 1


def test_object_f1_under_half_overlap_is_a_miss() -> None:
    pred = np.zeros((16, 16), bool)
    pred[0:4, 0:1] = True  # 4 of 16 pixels of the gt object
    assert M.object_f1(pred, _square(0, 0)) == 0.0  # FP 1, FN 1


def test_object_f1_instance_labels() -> None:
    gt = np.zeros((4, 8), np.int64)
    gt[:, :4], gt[:, 4:] = 2, 3  # touching objects: only instance labels keep them apart
    pred = np.ones((4, 8), bool)
    assert M.object_f1(pred, gt) == pytest.approx(2 / 3)
    assert M.object_f1(gt > 0, gt > 0) == 1.0


def test_object_dice_by_hand() -> None:
    half = np.zeros((16, 16), bool)
    half[0:4, 0:2] = True
    assert M.object_dice(half, _square(0, 0)) == pytest.approx(2 * 8 / (8 + 16))
    # one of two equal gt objects found: S side 1.0, G side 0.5 * 1 + 0.5 * 0
    assert M.object_dice(_square(0, 0), _square(0, 0) | _square(8, 8)) == pytest.approx(0.75)


def test_object_hausdorff_known_shapes() -> None:
    # a 4x4 square shifted by 3 columns overlaps its gt: distance 3 from both sides
    assert M.object_hausdorff(_square(0, 3), _square(0, 0)) == pytest.approx(3.0)
    # no overlap: matched to the nearest gt object, 10 columns away
    assert M.object_hausdorff(_square(0, 10, shape=(16, 20)), _square(0, 0, shape=(16, 20))) == (
        pytest.approx(10.0))


def test_object_metrics_empty_cases() -> None:
    empty, obj = np.zeros((8, 8), bool), _square(0, 0, shape=(8, 8))
    assert (M.object_f1(empty, empty), M.object_dice(empty, empty), M.object_hausdorff(empty, empty)) == (
        1.0, 1.0, 0.0)
    for a, b in ((empty, obj), (obj, empty)):
        assert M.object_f1(a, b) == 0.0 and M.object_dice(a, b) == 0.0
        assert M.object_hausdorff(a, b) == float("inf")


# ---- sliced Wasserstein --------------------------------------------------------------------


def _tissue(seed: int, two_tone: bool, size: int = 64) -> np.ndarray:
    """Pink noise, or pink and purple halves (another colour distribution)."""
    rng = np.random.default_rng(seed)
    base = np.full((size, size, 3), (235, 170, 200), np.float64)
    if two_tone:
        base[:, rng.integers(8, size - 8) :] = (110, 50, 140)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def test_swd_identical_sets_zero_and_deterministic() -> None:
    a = [_tissue(i, False) for i in range(3)]
    b = [_tissue(10 + i, True) for i in range(2)]
    assert M.sliced_wasserstein(a, a, projections=64)["levels"] == [0.0] * 3  # 64, 32, 16
    assert M.sliced_wasserstein(a, b, projections=64) == M.sliced_wasserstein(a, b, projections=64)


def test_swd_larger_for_another_colour_distribution() -> None:
    a = [_tissue(i, False) for i in range(3)]
    same = [_tissue(20 + i, False) for i in range(3)]
    other = [_tissue(40 + i, True) for i in range(3)]
    near = M.sliced_wasserstein(a, same, projections=64)["mean"]
    far = M.sliced_wasserstein(a, other, projections=64)["mean"]
    assert 0 < near < far / 2


def test_swd_small_images() -> None:
    with pytest.raises(ValueError, match="smaller"):
        M.sliced_wasserstein([_tissue(0, False, 5)], [_tissue(1, False, 5)])
    assert M.swd_levels(16) == 1 and M.swd_levels(64) == 3


def test_wasserstein_1d_matches_scipy_for_unequal_sizes() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 50)), rng.normal(1, 2, size=(3, 70))
    ours = _wasserstein_1d(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ref = [scipy.stats.wasserstein_distance(x, y) for x, y in zip(a, b, strict=True)]
    assert ours == pytest.approx(ref)


def test_laplacian_pyramid_shapes() -> None:
    levels = M.laplacian_pyramid(_tissue(0, True, 40), 3)
    assert [lv.shape for lv in levels] == [(3, 40, 40), (3, 20, 20), (3, 10, 10)]


# ---- MS-SSIM -------------------------------------------------------------------------------


def _noisy(image: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_ms_ssim_identity_and_noise() -> None:
    a = _tissue(0, True, 96)
    assert M.ms_ssim(a, a) == pytest.approx(1.0)
    values = [M.ms_ssim(a, _noisy(a, s)) for s in (5, 20, 60)]
    assert 1.0 > values[0] > values[1] > values[2] > 0


def test_ms_ssim_one_scale_is_ssim() -> None:
    a = _tissue(0, True, 20)
    b = _noisy(a, 15)
    ref = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert M.ms_scales(20) == 1
    assert M.ms_ssim(a, b) == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize(("side", "scales"), [(11, 1), (21, 1), (22, 2), (175, 4), (176, 5), (1024, 5)])
def test_ms_scales(side: int, scales: int) -> None:
    assert M.ms_scales(side) == scales


def test_ms_ssim_bad_inputs() -> None:
    with pytest.raises(ValueError):
        M.ms_ssim(_tissue(0, False, 32), _tissue(0, False, 48))
    with pytest.raises(ValueError, match="11x11"):
        M.ms_ssim(_tissue(0, False, 8), _tissue(0, False, 8))
    with pytest.raises(ValueError):
        M.mean_pairwise_ms_ssim([_tissue(0, False, 32)])


def test_mean_pairwise_ms_ssim() -> None:
    a = _tissue(0, True, 48)
    assert M.mean_pairwise_ms_ssim([a, a, a]) == pytest.approx(1.0)
    diverse = M.mean_pairwise_ms_ssim([_noisy(a, 30, s) for s in range(3)])
    assert diverse < M.mean_pairwise_ms_ssim([_noisy(a, 5, s) for s in range(3)])


# ---- FID / KID and extractors --------------------------------------------------------------


def test_fid_identical_and_shifted() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 4))
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert M.frechet_distance(a, a + shift) == pytest.approx(shift @ shift)
    independent = rng.normal(size=(2000, 4)) + shift
    assert M.frechet_distance(a, independent) == pytest.approx(shift @ shift, abs=0.15)


def test_kid_same_and_shifted() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same = M.kernel_inception_distance(a, b, subsets=20, subset_size=200, seed=0)
    shifted = M.kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=200, seed=0)
    assert abs(same) < 0.05 and shifted > 1.0  # noise ~0.02 at this size; shift gives ~9
    assert same == M.kernel_inception_distance(a, b, subsets=20, subset_size=200, seed=0)


def test_feature_distance_bad_inputs() -> None:
    with pytest.raises(ValueError):
        M.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        M.kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_random_conv_extractor() -> None:
    images = [_tissue(i, i % 2 == 1, 40) for i in range(3)]
    ext = M.make_extractor(None)
    assert isinstance(ext, M.RandomConvExtractor) and isinstance(ext, M.FeatureExtractor)
    assert ext.name == "randconv-v1"
    feats = ext(images)
    assert feats.shape == (3, 480) and np.isfinite(feats).all()
    assert np.array_equal(feats, M.RandomConvExtractor(seed=0)(images))
    assert not np.allclose(feats, M.RandomConvExtractor(seed=1)(images))


class _TinyInception(torch.nn.Module):
    """Stands in for inception-2015-12-05.pt: mean colour as 'features'."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 299, 299)
        feats = x.float().mean(dim=(2, 3))  # (N, 3)
        return feats if return_features else feats.sum(dim=1, keepdim=True)


def test_inception_extractor_loads_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "inception.pt"
    torch.jit.script(_TinyInception()).save(str(path))
    ext = M.make_extractor(str(path))
    assert isinstance(ext, M.InceptionExtractor) and "inception" in ext.name
    image = np.full((50, 70, 3), (10, 20, 30), np.uint8)
    assert ext([image, image]) == pytest.approx(np.array([[10.0, 20.0, 30.0]] * 2))


def test_inception_extractor_missing_or_corrupt(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(ValueError, match="nope.pt"):
        M.InceptionExtractor(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torchscript archive")
    with pytest.raises(ValueError, match="corrupt.pt"):
        M.InceptionExtractor(corrupt)
