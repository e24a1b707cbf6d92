"""Realism measures: the classifier two-sample test and nuclei by colour deconvolution."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from model.config import NucleiConfig, TwoSampleConfig
from model.evaluation.realism import (
    PatchClassifier,
    compare_detail_colour,
    compare_nuclei,
    detail_colour,
    find_nuclei,
    fit_threshold,
    grid_patches,
    halves,
    nuclei_ratios,
    nuclei_stats,
    real_vs_real,
    sample_patches,
    two_sample_by_blur,
    two_sample_test,
)
from model.evaluation.realism import blurred as gaussian_blurred

PINK, PURPLE = (235, 170, 200), (60, 40, 120)
FAST = TwoSampleConfig(patch=16, steps=60, batch_size=16, width=8, test_stride=16)


def textured(seed: int, colour: tuple[int, int, int], size: int = 64, noise: float = 20.0
             ) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.asarray(colour, np.float32) + rng.normal(0, noise, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def discs(radii: list[int], size: int = 128, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A pink image with a purple disc of each radius, on a grid; their centres."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = PINK
    yy, xx = np.mgrid[0:size, 0:size]
    centres = []
    for i, r in enumerate(radii):
        cy, cx = 20 + 40 * (i // 3), 20 + 40 * (i % 3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = PURPLE
        centres.append((cy, cx))
    return img, centres


# ---- two-sample test: pieces ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 10, 3), (8, 11, 3), (5, 4)])
def test_halves_split_columns(shape: tuple[int, ...]) -> None:
    a = np.zeros(shape)
    left, right = halves(a)
    assert left.shape[1] + right.shape[1] == shape[1]
    assert left.shape[0] == right.shape[0] == shape[0]


def test_patch_samplers_shapes_and_grid_count() -> None:
    images = [textured(0, PINK, 64), textured(1, PINK, 48)]
    p = sample_patches(images, 7, 16, np.random.default_rng(0))
    assert p.shape == (7, 16, 16, 3) and p.dtype == np.uint8
    assert grid_patches(images, 16, 16).shape == (16 + 9, 16, 16, 3)


@pytest.mark.parametrize("width", [4, 8])
def test_patch_classifier_one_logit_per_patch(width: int) -> None:
    assert PatchClassifier(width)(torch.zeros(5, 3, 32, 32)).shape == (5,)


# ---- two-sample test: behaviour -------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "low", "high"),
    [
        (PURPLE, 0.95, 1.0),  # a different colour: always told apart
        (PINK, 0.3, 0.7),  # the same distribution: chance
    ],
)
def test_two_sample_accuracy_on_synthetic_sets(second: tuple[int, int, int], low: float,
                                               high: float) -> None:
    a = [textured(i, PINK) for i in range(4)]
    b = [textured(10 + i, second) for i in range(4)]
    result = two_sample_test(a, b, FAST, seed=0)
    assert low <= result["accuracy"] <= high
    assert result["n_test_patches"] == [4 * 4 * 2, 4 * 4 * 2]


def test_two_sample_is_reproducible_by_seed() -> None:
    a = [textured(i, PINK) for i in range(2)]
    b = [textured(5 + i, PINK, noise=30) for i in range(2)]
    assert two_sample_test(a, b, FAST, seed=3) == two_sample_test(a, b, FAST, seed=3)


def test_two_sample_reports_the_median_of_its_classifiers() -> None:
    a = [textured(i, PINK) for i in range(2)]
    b = [textured(5 + i, PINK, noise=30) for i in range(2)]
    three = two_sample_test(a, b, replace(FAST, steps=8, repeats=3), seed=3)
    assert len(three["accuracies"]) == 3 and three["repeats"] == 3
    assert three["accuracy"] == sorted(three["accuracies"])[1]
    for k in range(3):  # classifier k is the single classifier of seed 3 + k
        assert two_sample_test(a, b, replace(FAST, steps=8, repeats=1), seed=3 + k)["accuracy"] == three["accuracies"][k]
    with pytest.raises(ValueError, match="repeats"):
        two_sample_test(a, b, replace(FAST, repeats=0))


#: A mid colour: PINK's red channel (235) would clip at 255 under a +40 checkerboard and darken
#: the checkered set by 10 levels, a difference that no blur removes.
MAUVE = (150, 110, 140)


def checkered(seed: int, amplitude: int) -> np.ndarray:
    """Mauve with per-pixel noise and a 1-pixel checkerboard of +-amplitude levels (no clipping:
    the mean colour is the same for every amplitude)."""
    board = (np.indices((64, 64)).sum(0) % 2 * 2 - 1)[..., None] * amplitude
    return np.clip(textured(seed, MAUVE).astype(np.int64) + board, 0, 255).astype(np.uint8)


def test_two_sample_by_blur_falls_to_chance_once_the_difference_is_blurred_away() -> None:
    """The sets differ only in a 1-pixel checkerboard: told apart unblurred, not after a blur
    of 2 px (which removes it), and the floor row is the same test against the floor set."""
    a = [checkered(i, 0) for i in range(4)]
    b = [checkered(10 + i, 40) for i in range(4)]
    floor = [checkered(20 + i, 0) for i in range(4)]
    assert np.abs(np.mean(a, axis=(0, 1, 2)) - np.mean(b, axis=(0, 1, 2))).max() < 0.5  # only the checkerboard
    cfg = replace(FAST, blur_sigmas=(2.0,))
    assert two_sample_test(a, b, cfg, seed=0)["accuracy"] >= 0.95
    (row,) = two_sample_by_blur(a, b, floor, cfg, seed=0)
    assert row["sigma"] == 2.0 and row["accuracy"] <= 0.75
    assert row["floor"] == two_sample_test(gaussian_blurred(a, 2.0), gaussian_blurred(floor, 2.0), cfg, 0)["accuracy"]
    one = two_sample_by_blur(a, b, floor, replace(cfg, repeats=1, blur_sigmas=(0.5,)), seed=0)[0]
    three = two_sample_by_blur(a, b, floor, replace(cfg, repeats=3, blur_sigmas=(0.5,)), seed=0)[0]
    assert one["accuracies"] == [one["accuracy"]] and one["floor_accuracies"] == [one["floor"]]
    for key, median in (("accuracies", "accuracy"), ("floor_accuracies", "floor")):  # every classifier's
        assert len(three[key]) == 3 and three[key][0] == one[median] and three[median] == sorted(three[key])[1]
    assert two_sample_by_blur(a, b, None, cfg)[0]["floor"] is None
    assert two_sample_by_blur(a, b, floor, FAST) == []  # no sigmas: no rows
    with pytest.raises(ValueError, match="positive"):
        gaussian_blurred(a, 0.0)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([], [textured(0, PINK)], "needs images"),
        ([textured(0, PINK, size=20)], [textured(0, PINK)], "too small"),
        ([np.zeros((64, 64), np.uint8)], [textured(0, PINK)], "uint8"),
    ],
)
def test_two_sample_rejects_bad_input(a: list[np.ndarray], b: list[np.ndarray], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        two_sample_test(a, b, FAST)


@pytest.mark.parametrize(("split", "count", "message"),
                         [("tiles", 1, "at least two"), ("rows", 2, "unknown split")])
def test_real_vs_real_rejects_bad_split(split: str, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        real_vs_real([textured(i, PINK) for i in range(count)], split, FAST)  # type: ignore[arg-type]


# ---- nuclei --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("radii", "kept"),
    [
        ([6, 6, 6], 3),  # ~113 px: nucleus size
        ([2, 6, 9], 2),  # ~13 px speck dropped
        ([6, 17], 1),  # ~908 px cluster dropped
        ([], 0),
    ],
)
def test_find_nuclei_keeps_objects_of_nucleus_size(radii: list[int], kept: int) -> None:
    img, centres = discs(radii)
    areas, found = find_nuclei(img, 0.08, NucleiConfig())
    assert len(areas) == kept
    for area in areas:
        assert 80 <= area <= 300
    for cy, cx in found:
        assert min(abs(cy - y) + abs(cx - x) for y, x in centres) < 1.0


def test_fit_threshold_separates_purple_from_pink() -> None:
    img, _ = discs([6, 6, 9, 9, 6, 6])
    t = fit_threshold([img])
    assert 0.0 < t < 0.155  # pink has no haematoxylin; the purple discs ~0.155
    with pytest.raises(ValueError, match="at least one"):
        fit_threshold([])


def test_nuclei_stats_assigns_nuclei_to_the_class_at_their_centre() -> None:
    img, _ = discs([6, 6, 6])  # centres at columns 20, 60, 100 of row 20
    mask = np.zeros(img.shape[:2], np.int64)
    mask[:, 80:] = 1
    stats = nuclei_stats([img], [mask], 0.08, ["stroma", "gland"])
    assert stats["count"] == 3 and stats["per_image"] == 3
    assert stats["per_megapixel"] == pytest.approx(3 / (128 * 128 / 1e6))
    assert stats["per_class"]["stroma"]["count"] == 2
    assert stats["per_class"]["gland"]["count"] == 1
    assert stats["per_class"]["gland"]["pixels"] == 128 * 48


def test_nuclei_ratios_and_missing_classes() -> None:
    img, _ = discs([6, 6, 6])
    fewer, _ = discs([6])
    mask = np.zeros(img.shape[:2], np.int64)
    a = nuclei_stats([fewer], [mask], 0.08, ["stroma", "gland"])
    b = nuclei_stats([img], [mask], 0.08, ["stroma", "gland"])
    r = nuclei_ratios(a, b)
    assert r["per_megapixel"] == pytest.approx(1 / 3)
    assert r["mean_area"] == pytest.approx(1.0)
    assert r["per_class"]["gland"] == {"per_megapixel": None, "mean_area": None}


def test_compare_nuclei_reports_threshold_floor_and_ratios() -> None:
    real, _ = discs([6, 6, 6, 6])
    gen, _ = discs([6, 6])
    mask = np.zeros(real.shape[:2], np.int64)
    out = compare_nuclei([gen], [mask], [real], [mask], [real], [mask], ["stroma"])
    assert out["area_range_px"] == [30, 800] and out["threshold"] > 0
    assert out["ratio"]["per_megapixel"] == pytest.approx(0.5)
    assert out["ratio_reference_vs_real"]["per_megapixel"] == pytest.approx(1.0)


def test_nuclei_stats_rejects_mismatched_inputs() -> None:
    img, _ = discs([6])
    with pytest.raises(ValueError, match="masks"):
        nuclei_stats([img], [], 0.08, ["stroma"])
    with pytest.raises(ValueError, match="differ"):
        nuclei_stats([img], [np.zeros((4, 4), np.int64)], 0.08, ["stroma"])


# ---- on the real Gleason tiles -------------------------------------------------------------


@pytest.fixture(scope="module")
def real_tiles(gleason_dir: Path) -> list[np.ndarray]:
    from model.training.data import load_dataset

    return [im[:512, :512] for im in load_dataset(gleason_dir).images]


def blurred(images: list[np.ndarray]) -> list[np.ndarray]:
    return [ndi.gaussian_filter(im, (3, 3, 0)) for im in images]


REAL = TwoSampleConfig(steps=100)


@pytest.mark.integration
def test_two_sample_real_halves_near_chance(real_tiles: list[np.ndarray]) -> None:
    assert 0.35 <= real_vs_real(real_tiles, "halves", REAL)["accuracy"] <= 0.65


@pytest.mark.integration
def test_two_sample_real_against_blurred_real(real_tiles: list[np.ndarray]) -> None:
    assert two_sample_test(real_tiles, blurred(real_tiles), REAL)["accuracy"] >= 0.9


@pytest.mark.integration
def test_two_sample_blur_profile_on_real_tiles(real_tiles: list[np.ndarray]) -> None:
    """Real against blurred (sigma 3) real is told apart, but no longer after both are blurred
    by 6 px: the profile places the difference below that scale."""
    (row,) = two_sample_by_blur(real_tiles, blurred(real_tiles), None, replace(REAL, blur_sigmas=(6.0,)))
    assert row["accuracy"] <= 0.75


@pytest.mark.integration
def test_nuclei_fewer_in_blurred_tiles(real_tiles: list[np.ndarray]) -> None:
    masks = [np.zeros(im.shape[:2], np.int64) for im in real_tiles]
    t = fit_threshold(real_tiles)
    real = nuclei_stats(real_tiles, masks, t, ["tissue"])
    blur = nuclei_stats(blurred(real_tiles), masks, t, ["tissue"])
    assert 400 <= real["per_megapixel"] <= 3000  # ~1.1-1.6 k per 1201^2 tile: ~1000/MP
    assert blur["per_megapixel"] < 0.75 * real["per_megapixel"]


@pytest.mark.parametrize(("factor", "expected"), [(1, (30, 800, 1)), (2, (8, 200, 0)), (4, (2, 50, 0))])
def test_nuclei_config_at_downscale(factor: int, expected: tuple[int, int, int]) -> None:
    cfg = NucleiConfig().at_downscale(factor)
    assert (cfg.min_area, cfg.max_area, cfg.opening) == expected


def _grey_detail(seed: int, size: int = 64) -> np.ndarray:
    """Pink with detail that only darkens or lightens all channels alike."""
    rng = np.random.default_rng(seed)
    img = np.asarray(PINK, np.float32) - 30 + rng.normal(0, 12, (size, size, 1))
    return np.clip(img, 0, 255).round().astype(np.uint8)


def test_detail_colour_tells_one_axis_detail_from_colour_noise() -> None:
    grey = [_grey_detail(s) for s in range(3)]
    speckle = [textured(s, PINK, noise=12.0) for s in range(3)]  # independent noise per channel
    one, noisy = detail_colour(grey, 2), detail_colour(speckle, 2)
    assert one["off_axis"] < 0.01 and noisy["off_axis"] > 0.5  # three equal axes: 2/3 off the first
    assert np.allclose(one["axis"], np.full(3, 3 ** -0.5), atol=0.02)
    assert noisy["variance"] > 0 and detail_colour([np.full((8, 8, 3), 99, np.uint8)], 2)["variance"] == 0
    assert detail_colour([np.full((8, 8, 3), 99, np.uint8)], 2)["off_axis"] is None  # no detail, no axis
    report = compare_detail_colour(speckle, grey, grey[:2], pools=(2, 4))
    assert [row["pool"] for row in report["by_pool"]] == [2, 4]
    first = report["by_pool"][0]
    assert first["off_axis_ratio"] > 50 and first["reference_off_axis_ratio"] == pytest.approx(1.0, abs=0.3)
    with pytest.raises(ValueError, match="at least one image"):
        detail_colour([], 2)


def test_real_tiles_detail_is_nearly_one_colour_axis(real_tiles: list[np.ndarray]) -> None:
    for pool in (2, 8):
        assert detail_colour(real_tiles, pool)["off_axis"] < 0.05
