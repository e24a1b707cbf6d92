"""Reading, dataset loading, tiling, sampling and pyramids (model/training/data.py, model/imageio.py)."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.classes import ClassTable
from model.training.data import (
    Dataset,
    RawTiles,
    TileSampler,
    colour_map,
    load_dataset,
    read_image,
    read_mask,
    resize_image,
    resize_mask,
    split_labeled,
    tile_positions,
)
from tests.conftest import SYNTH_CLASSES, synthetic_tile

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def encode(arr: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


# ---- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, exact", [("PNG", True), ("TIFF", True), ("BMP", True), ("JPEG", False)]
)
def test_read_image_formats_from_path_and_bytes(tmp_path: Path, fmt: str, exact: bool) -> None:
    data = encode(RGB, fmt)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    for src in (data, path, str(path)):
        img = read_image(src)
        assert img.shape == (6, 5, 3) and img.dtype == np.uint8
        if exact:
            np.testing.assert_array_equal(img, RGB)


@pytest.mark.parametrize(
    "arr, mode",
    [
        (RGB[..., 0], "L"),
        (np.dstack([RGB, np.full((6, 5), 255, np.uint8)]), "RGBA"),
        ((RGB[..., 0].astype(np.uint16) * 257), "I;16"),
    ],
)
def test_read_image_converts_to_rgb(arr: np.ndarray, mode: str) -> None:
    img = read_image(encode(arr, "PNG"))
    assert img.shape == (6, 5, 3) and img.dtype == np.uint8
    ref = RGB if mode == "RGBA" else np.repeat(RGB[..., :1], 3, axis=2)
    np.testing.assert_array_equal(img, ref)


def test_read_image_rejects_transparency() -> None:
    rgba = np.dstack([RGB, np.zeros((6, 5), np.uint8)])
    with pytest.raises(ValueError, match="transparent"):
        read_image(encode(rgba, "PNG"), name="a.png")


@pytest.mark.parametrize(
    "arr, fmt, expect_dtype",
    [
        (np.array([[0, 1], [1, 0]], bool), "PNG", np.uint8),  # mode 1 -> 0/1
        (np.array([[0, 4], [3, 255]], np.uint8), "PNG", np.uint8),  # L
        (np.array([[0, 4], [3, 255]], np.uint8), "BMP", np.uint8),
        (np.array([[0, 4], [3, 255]], np.uint8), "TIFF", np.uint8),
        (np.array([[0, 1000], [40000, 65535]], np.uint16), "PNG", np.uint16),  # 16-bit
        (np.array([[0, 1000], [40000, 65535]], np.uint16), "TIFF", np.uint16),
    ],
)
def test_read_mask_raw_values(arr: np.ndarray, fmt: str, expect_dtype: type) -> None:
    mask = read_mask(encode(arr, fmt))
    assert mask.dtype == expect_dtype
    np.testing.assert_array_equal(mask, arr.astype(expect_dtype))


def test_read_mask_palette_gives_indices_and_rgb_gives_colours() -> None:
    im = Image.fromarray(np.array([[0, 2], [1, 2]], np.uint8), mode="P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    np.testing.assert_array_equal(read_mask(buf.getvalue()), [[0, 2], [1, 2]])
    assert read_mask(encode(RGB, "PNG")).shape == (6, 5, 3)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"definitely not an image", "cannot read up.png as an image"),
        (encode(RGB, "PNG")[:60], "cannot read up.png as an image"),  # truncated
        (b"GIF89a" + b"\0" * 20, "cannot read up.png as an image"),  # format not accepted
    ],
)
def test_corrupt_input_is_a_value_error(data: bytes, match: str) -> None:
    for reader in (read_image, read_mask):
        with pytest.raises(ValueError, match=match):
            reader(data, name="up.png")


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def huge_png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (its data is garbage, never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\0" * 16)


def test_pixel_limit_checked_before_decoding() -> None:
    with pytest.raises(ValueError, match="5x4 = 20 pixels, more than the limit of 19"):
        read_image(encode(np.zeros((4, 5, 3), np.uint8), "PNG"), max_pixels=19)
    assert read_image(encode(np.zeros((4, 5, 3), np.uint8), "PNG"), max_pixels=20).shape[:2] == (
        4,
        5,
    )
    with pytest.raises(
        ValueError, match="12000x12000 = 144000000 pixels, more than the limit of 99"
    ):
        read_mask(huge_png_header(12_000, 12_000), max_pixels=99)
    with pytest.raises(ValueError, match="too large to decode safely"):  # Pillow's warning
        read_image(huge_png_header(12_000, 12_000))
    with pytest.raises(ValueError, match="too large .* the limit is 99 pixels"):  # Pillow's error
        read_image(huge_png_header(100_000, 100_000), max_pixels=99)


# ---- datasets -------------------------------------------------------------------------------


def make_folder(root: Path, n: int = 3, size: int = 24, classes: dict | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img, mask = synthetic_tile(i, size)
        Image.fromarray(img).save(root / "images" / f"t{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"t{i}.png")
    (root / "classes.json").write_text(json.dumps(classes or SYNTH_CLASSES))
    return root


def test_load_folder_dataset(synthetic_dataset_dir: Path) -> None:
    ds = load_dataset(synthetic_dataset_dir)
    assert ds.names == [f"tile{i}" for i in range(4)] and len(ds) == 4
    assert ds.classes.num_classes == 3 and ds.unlabeled == []
    for img, mask in zip(ds.images, ds.masks, strict=True):
        assert img.shape == (96, 96, 3) and mask.shape == (96, 96) and mask.dtype == np.int64
    np.testing.assert_array_equal(ds.masks[1], synthetic_tile(1)[1])


def test_load_unlabeled_and_filters(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=3)
    (root / "unlabeled").mkdir()
    Image.fromarray(RGB).save(root / "unlabeled" / "u0.jpg")
    assert len(load_dataset(root).unlabeled) == 1
    ds = load_dataset(root, exclude=["t1", "u0"])
    assert ds.names == ["t0", "t2"] and ds.unlabeled == []
    assert load_dataset(root, include=["t2"]).names == ["t2"]
    with pytest.raises(ValueError, match=r"\['nope', 'zz'\]"):
        load_dataset(root, exclude=["zz", "t0", "nope"])
    with pytest.raises(ValueError, match="no labelled images"):
        load_dataset(root, include=["t0"], exclude=["t0"])


def test_unknown_mask_values_name_file_and_values(tmp_path: Path) -> None:
    two = {"name": "two", "classes": SYNTH_CLASSES["classes"][:2]}  # values 0, 1 only
    root = make_folder(tmp_path / "d", n=2, size=48, classes=two)
    bad = [n for n in ("t0", "t1") if 2 in synthetic_tile(int(n[1]), 48)[1]][0]
    with pytest.raises(ValueError, match=rf"masks/{bad}\.png: mask has values \[2\]"):
        load_dataset(root)


@pytest.mark.parametrize(
    "breakage, match",
    [
        (lambda r: (r / "images" / "t0.png").rename(r / "images" / "lone.png"), "lone.png"),
        (lambda r: shutil.rmtree(r / "masks"), "masks folder .* does not exist"),
        (lambda r: (r / "classes.json").unlink(), "classes.json does not exist"),
        (
            lambda r: Image.fromarray(np.zeros((8, 9), np.uint8)).save(r / "masks" / "t1.png"),
            r"masks/t1.png is 9x8 but its image .*t1.png is 24x24",
        ),
        (lambda r: [p.unlink() for p in r.glob("*/t*.png")], "no labelled images"),
    ],
)
def test_folder_errors(tmp_path: Path, breakage: Callable[[Path], object], match: str) -> None:
    root = make_folder(tmp_path / "d", n=2)
    breakage(root)
    with pytest.raises(ValueError, match=match):
        load_dataset(root)


def make_glas(root: Path) -> Path:
    root.mkdir()
    inst = np.zeros((10, 12), np.uint8)
    inst[1:4, 1:4], inst[6:9, 5:11] = 1, 2  # two gland instances
    for name in ("train_1", "train_2"):
        Image.fromarray(RGB.repeat(2, 0).repeat(3, 1)[:10, :12]).save(root / f"{name}.bmp")
        Image.fromarray(inst).save(root / f"{name}_anno.bmp")
    rows = [
        "name,patient ID,grade (GlaS),grade (Sirinukunwattana et al. 2015)",
        "train_1,1, benign, healthy",
        "train_2,2, malignant, moderately differentiated",
    ]
    (root / "Grade.csv").write_text("\n".join(rows) + "\n")
    return root


def test_glas_layout(tmp_path: Path) -> None:
    root = make_glas(tmp_path / "glas")
    ds = load_dataset(root, layout="glas")
    assert ds.names == ["train_1", "train_2"] and ds.classes.num_classes == 2
    assert set(np.unique(ds.masks[1])) == {0, 1} and ds.masks[1][7, 6] == 1
    three = ClassTable.from_dict(
        {
            "classes": [
                {"name": "background", "values": [0], "color": "#000000"},
                {"name": "benign", "values": [1], "color": "#00ff00"},
                {"name": "malignant", "values": [2], "color": "#ff0000"},
            ]
        }
    )
    ds3 = load_dataset(root, classes=three, layout="glas", exclude=["train_1"])
    assert ds3.names == ["train_2"] and set(np.unique(ds3.masks[0])) == {0, 2}
    assert set(np.unique(load_dataset(root, three, "glas").masks[0])) == {0, 1}
    (root / "Grade.csv").unlink()
    with pytest.raises(ValueError, match="Grade.csv"):
        load_dataset(root, classes=three, layout="glas")
    (root / "train_2_anno.bmp").unlink()
    with pytest.raises(ValueError, match="train_2.bmp"):
        load_dataset(root, layout="glas")


def small_dataset(n: int = 5) -> Dataset:
    images = [np.full((4, 4, 3), i, np.uint8) for i in range(n)]
    masks = [np.zeros((4, 4), np.int64) for _ in range(n)]
    return Dataset(ClassTable.binary(), [f"n{i}" for i in range(n)], images, masks, [RGB], "x")


@pytest.mark.parametrize("fraction, kept", [(1.0, 5), (0.4, 2), (0.01, 1)])
def test_split_labeled(fraction: float, kept: int) -> None:
    ds = small_dataset()
    sub, pool = split_labeled(ds, fraction, seed=3)
    assert len(sub) == kept and len(pool) == 5 - kept + 1 and sub.unlabeled is pool
    assert pool[-1] is RGB
    assert {int(im[0, 0, 0]) for im in sub.images + pool[:-1]} == set(range(5))
    assert split_labeled(ds, fraction, seed=3)[0].names == sub.names
    with pytest.raises(ValueError, match="fraction"):
        split_labeled(ds, 0.0, seed=3)


# ---- tiling and sampling ------------------------------------------------------------------


@pytest.mark.parametrize(
    "h, w, tile, overlap, rows, cols",
    [
        (10, 10, 4, 0, [0, 4, 6], [0, 4, 6]),
        (10, 7, 4, 2, [0, 2, 4, 6], [0, 2, 3]),
        (8, 8, 8, 2, [0], [0]),
        (5, 20, 8, 0, [0], [0, 8, 12]),
        (1201, 1201, 1024, 128, [0, 177], [0, 177]),
    ],
)
def test_tile_positions_cover_image(
    h: int, w: int, tile: int, overlap: int, rows: list[int], cols: list[int]
) -> None:
    pos = tile_positions(h, w, tile, overlap)
    assert pos == [(r, c) for r in rows for c in cols]
    covered = np.zeros((max(h, tile), max(w, tile)), bool)
    for t, s in pos:
        covered[t : t + tile, s : s + tile] = True
    assert covered[:h, :w].all()


def test_tile_positions_rejects_bad_overlap() -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_positions(10, 10, 4, 4)


def sampler(seed: int = 0, jitter: float = 0.0, labelled: bool = True) -> TileSampler:
    imgs = [synthetic_tile(i, 24)[0] for i in range(3)]
    masks = [synthetic_tile(i, 24)[1].astype(np.int64) for i in range(3)] if labelled else None
    return TileSampler(imgs, masks, tile_size=16, overlap=4, color_jitter=jitter, seed=seed)


def test_sampler_shapes_and_determinism() -> None:
    x, y = sampler().sample(3)
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32
    assert y is not None and y.shape == (3, 16, 16) and y.dtype == torch.long
    assert x.min() >= -1 and x.max() <= 1
    x2, y2 = sampler().sample(3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, sampler(seed=1).sample(3)[0])
    xu, yu = sampler(labelled=False).sample(2)
    assert xu.shape == (2, 3, 16, 16) and yu is None


def test_sampler_resumes_the_same_stream(tmp_path: Path) -> None:
    s = sampler(jitter=0.1)
    s.sample(2)
    torch.save(s.state_dict(), tmp_path / "state.pt")
    a = s.sample(4)
    s.sample(3)  # the stream moves on
    s.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    b = s.sample(4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # type: ignore[arg-type]
    fresh = sampler(seed=99, jitter=0.1)
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(fresh.sample(4)[0], a[0])


def test_flips_and_rotations_keep_image_and_mask_aligned() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), np.int64)
    for r, c in [(0, 0), (0, 1), (0, 2), (1, 0), (5, 6)]:  # asymmetric marker
        img[r, c], mask[r, c] = 255, 1
    s = TileSampler([img], [mask], tile_size=8, overlap=0, color_jitter=0.0, seed=0)
    x, y = s.sample(32)
    assert y is not None
    assert torch.equal(x[:, 0] > 0, y == 1)
    assert len({tuple(m.flatten().tolist()) for m in y}) >= 4  # several orientations drawn


def test_small_images_are_padded() -> None:
    img = RGB  # 6 x 5
    mask = np.arange(30).reshape(6, 5) % 2
    x, y = TileSampler([img], [mask], 8, 2, 0.0, seed=0).sample(4)
    assert x.shape == (4, 3, 8, 8) and y is not None and y.shape == (4, 8, 8)
    assert set(y.unique().tolist()) <= {0, 1}


def test_color_jitter_changes_image_only() -> None:
    plain, jittered = sampler(jitter=0.0), sampler(jitter=0.3)
    xs, ys = plain.sample(4)
    xj, yj = jittered.sample(4)
    assert torch.equal(ys, yj)  # type: ignore[arg-type]
    assert not torch.allclose(xs, xj) and xj.min() >= -1 and xj.max() <= 1


def _reference_jitter(u: np.ndarray, amounts: np.ndarray) -> torch.Tensor:
    """The jitter written out step by step on one float image (the sampler's definition)."""
    bright, contrast, sat = 1 + amounts[:3]
    angle = 2 * np.pi * amounts[3]
    rgb = torch.from_numpy(u).permute(2, 0, 1).double() / 255 * bright  # (3, H, W) in [0, 1]
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                       dtype=torch.float64)
    luma = (yiq[0] @ rgb.reshape(3, -1)).mean()
    rgb = (rgb - luma) * contrast + luma
    c, s = np.cos(angle) * sat, np.sin(angle) * sat
    chroma = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    rgb = torch.einsum("ij,jhw->ihw", torch.linalg.inv(yiq) @ chroma @ yiq, rgb)
    return (rgb.clamp(0, 1) * 2 - 1).float()


@pytest.mark.parametrize("amounts", [[0, 0, 0, 0], [0.3, -0.2, 0.25, 0.1], [-0.3, 0.3, -0.3, -0.3]])
def test_colour_map_is_the_jitter(amounts: list[float]) -> None:
    u = RNG.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    a = np.array(amounts)
    raw = RawTiles(torch.from_numpy(u)[None], None,
                   torch.from_numpy(colour_map(a, u.reshape(-1, 3).mean(0))).float()[None])
    x = raw.images()
    assert x.shape == (1, 3, 9, 7) and x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x[0], _reference_jitter(u, a), rtol=0, atol=2e-6)
    if not any(amounts):  # no jitter: exactly the plain conversion
        torch.testing.assert_close(x[0], torch.from_numpy(u).permute(2, 0, 1).float() / 127.5 - 1,
                                   rtol=0, atol=1e-6)


def test_a_window_of_the_raw_tiles_is_that_window_of_the_tiles() -> None:
    whole, cut = sampler(jitter=0.2).sample_raw(5), sampler(jitter=0.2).sample_raw(5, (4, 2, 8, 12))
    assert cut.pixels.shape == (5, 8, 12, 3) and cut.labels is not None and whole.labels is not None
    assert cut.labels.dtype == torch.uint8  # class indices travel as bytes
    assert torch.equal(cut.pixels, whole.pixels[:, 4:12, 2:14])
    assert torch.equal(cut.labels, whole.labels[:, 4:12, 2:14])
    assert torch.equal(cut.colour, whole.colour)  # the jitter of the whole tile, not the window's
    x, y = sampler(jitter=0.2).sample(5)
    assert torch.equal(x[:, :, 4:12, 2:14], cut.images()) and torch.equal(y[:, 4:12, 2:14], cut.labels.long())  # type: ignore[index]
    with pytest.raises(ValueError, match="window"):
        sampler().sample_raw(1, (10, 0, 8, 8))


@pytest.mark.parametrize("pool", [2, 4, 16])
def test_pooled_images_equal_pooling_the_images(pool: int) -> None:
    imgs = [RNG.integers(0, 256, (208, 176, 3), dtype=np.uint8) for _ in range(2)]
    raw = TileSampler(imgs, None, tile_size=176, overlap=0, color_jitter=0.3, seed=0).sample_raw(3, (16, 0, 160, 176))
    pooled = raw.images(pool=pool)  # bands of rows on the CPU
    assert pooled.shape == (3, 3, 160 // pool, 176 // pool)
    assert pooled.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(pooled, torch.nn.functional.avg_pool2d(raw.images(), pool), rtol=0, atol=1e-6)


def test_class_indices_too_large_for_a_byte_stay_int64() -> None:
    img = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    raw = TileSampler([img], [np.full((8, 8), 300, np.int64)], 8, 0, 0.0, seed=0).sample_raw(1)
    assert raw.labels is not None and raw.labels.dtype == torch.int64 and int(raw.labels.max()) == 300


# ---- resizing ---------------------------------------------------------------------------


def test_resize() -> None:
    assert resize_image(RGB, (12, 7)).shape == (12, 7, 3)
    mask = np.array([[0, 1], [2, 3]], np.int64)
    np.testing.assert_array_equal(resize_mask(mask, (4, 4)), mask.repeat(2, 0).repeat(2, 1))
    assert resize_mask(np.zeros((5, 5, 3), np.uint8), (2, 3)).shape == (2, 3, 3)


# ---- real data ----------------------------------------------------------------------------


@pytest.mark.integration
def test_gleason_tiles(gleason_dir: Path) -> None:
    ds = load_dataset(gleason_dir)
    assert len(ds) == 8 and ds.classes.names == ["stroma", "benign", "low_grade", "high_grade"]
    assert all(im.shape == (1201, 1201, 3) for im in ds.images)
    assert all(m.shape == (1201, 1201) for m in ds.masks)
    present = set(np.unique(np.concatenate([np.unique(m) for m in ds.masks])).tolist())
    assert present == {0, 1, 2, 3}
    benign = [n for n, m in zip(ds.names, ds.masks, strict=True) if (m == 1).any()]
    assert benign == ["test10"]
    binary = load_dataset(gleason_dir, gleason_dir / "classes-binary.json", include=["test10"])
    assert binary.classes.num_classes == 2 and set(np.unique(binary.masks[0])) == {0, 1}


def test_random_windows_are_aligned_inside_the_tile_and_seeded() -> None:
    import torch

    from model.training.data import random_window

    draws = [random_window(64, 24, 8, torch.Generator().manual_seed(s)) for s in range(20)]
    assert all(t % 8 == 0 and left % 8 == 0 and t + 24 <= 64 and left + 24 <= 64 and (h, w) == (24, 24)
               for t, left, h, w in draws)
    assert len({d[:2] for d in draws}) > 1  # the corner varies with the draw
    assert draws[3] == random_window(64, 24, 8, torch.Generator().manual_seed(3))
    assert random_window(64, 64, 8, torch.Generator()) == (0, 0, 64, 64)
