"""Datasets: labelled pairs, unlabelled images, tiling, augmentation, resizing.

Images are uint8 (H, W, 3) arrays on disk and float (B, 3, H, W) tensors in [-1, 1] in the
networks; masks are int64 (H, W) class indices once decoded with the dataset's class table.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from model.classes import ClassInfo, ClassTable
from model.imageio import IMAGE_SUFFIXES, read_image, read_mask  # read_* re-exported
from model.tensors import pad_array

Layout = Literal["folder", "glas"]

# ---- datasets ---------------------------------------------------------------------------


@dataclass
class Dataset:
    """Labelled pairs plus unlabelled images.

    Args:
        classes: the class table the masks were decoded with.
        names: file stems of the labelled images.
        images: uint8 (H, W, 3) per labelled image.
        masks: int64 (H, W) class indices, one per image.
        unlabeled: uint8 (H, W, 3) images without masks.
        root: the folder the data came from.
    """

    classes: ClassTable
    names: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    unlabeled: list[np.ndarray] = field(default_factory=list)
    root: str = ""

    def __len__(self) -> int:
        return len(self.names)


def load_dataset(
    root: str | Path,
    classes: ClassTable | str | Path | None = None,
    layout: Layout = "folder",
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> Dataset:
    """Load a dataset folder.

    Args:
        root: ``folder`` layout: ``images/`` and ``masks/`` paired by file stem, optional
            ``unlabeled/``, ``classes.json``. ``glas`` layout: ``NAME.bmp`` with the instance
            mask ``NAME_anno.bmp`` (0 = background) and ``Grade.csv``.
        classes: class table or its JSON path; None: ``root/classes.json`` (folder) or
            background/gland (glas). A 3-class glas table means background, benign gland,
            malignant gland, in that order.
        layout: ``folder`` or ``glas``.
        include: keep only these stems (None keeps all).
        exclude: drop these stems, e.g. a hold-out split.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    if layout == "folder":
        table = _folder_classes(root, classes)
        pairs, unlabeled = _folder_files(root)
    elif layout == "glas":
        table = _glas_classes(classes)
        pairs, unlabeled = _glas_files(root), {}
    else:
        raise ValueError(f"unknown dataset layout {layout!r}; choose folder or glas")
    keep = _select(set(pairs) | set(unlabeled), include, exclude)
    names = sorted(n for n in pairs if n in keep)
    if not names:
        raise ValueError(f"dataset {root} has no labelled images (after include/exclude)")
    grades = _glas_grades(root, names) if layout == "glas" and table.num_classes == 3 else {}
    images, masks = [], []
    for n in names:
        image, raw = read_image(pairs[n][0]), read_mask(pairs[n][1])
        _check_same_size(pairs[n], image, raw)
        images.append(image)
        if layout == "glas":
            masks.append(_glas_labels(raw, grades.get(n)))
        else:
            masks.append(_decode(table, raw, pairs[n][1]))
    extra = [read_image(unlabeled[n]) for n in sorted(unlabeled) if n in keep]
    return Dataset(table, names, images, masks, extra, str(root))


def _image_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{what} folder {folder} does not exist")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.stem in out:
            raise ValueError(f"{folder} has two files named {p.stem}: {out[p.stem].name}, {p.name}")
        out[p.stem] = p
    return out


def _pair(images: dict[str, Path], masks: dict[str, Path]) -> dict[str, tuple[Path, Path]]:
    lonely = [str(images[n]) for n in images if n not in masks]
    lonely += [str(masks[n]) for n in masks if n not in images]
    if lonely:
        raise ValueError(f"files without a partner (image <-> mask): {', '.join(sorted(lonely))}")
    return {n: (images[n], masks[n]) for n in images}


def _folder_files(root: Path) -> tuple[dict[str, tuple[Path, Path]], dict[str, Path]]:
    pairs = _pair(_image_files(root / "images", "images"), _image_files(root / "masks", "masks"))
    unl = root / "unlabeled"
    return pairs, (_image_files(unl, "unlabeled") if unl.is_dir() else {})


def _folder_classes(root: Path, classes: ClassTable | str | Path | None) -> ClassTable:
    if isinstance(classes, ClassTable):
        return classes
    path = Path(classes) if classes is not None else root / "classes.json"
    if not path.is_file():
        raise ValueError(f"class table {path} does not exist; pass the classes explicitly")
    return ClassTable.from_json(path)


def _select(known: set[str], include: Sequence[str] | None, exclude: Sequence[str]) -> set[str]:
    asked = set(include or ()) | set(exclude)
    unknown = sorted(asked - known)
    if unknown:
        raise ValueError(f"include/exclude name images that are not in the dataset: {unknown}")
    keep = set(include) if include is not None else set(known)
    return keep - set(exclude)


def _check_same_size(files: tuple[Path, Path], image: np.ndarray, mask: np.ndarray) -> None:
    (ih, iw), (mh, mw) = image.shape[:2], mask.shape[:2]
    if (ih, iw) != (mh, mw):
        raise ValueError(
            f"mask {files[1]} is {mw}x{mh} but its image {files[0]} is {iw}x{ih} (width x height)"
        )


def _decode(table: ClassTable, raw: np.ndarray, path: Path) -> np.ndarray:
    try:
        return table.decode(raw)  # (H, W) int64
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# ---- GlaS layout ------------------------------------------------------------------------

_GLAS_GRADES = ("benign", "malignant")


def _glas_classes(classes: ClassTable | str | Path | None) -> ClassTable:
    if classes is None:
        return ClassTable(
            name="glas-binary",
            description="GlaS colon glands: background (stroma) versus gland.",
            classes=(ClassInfo("background", (0,), "#e6194b"), ClassInfo("gland", (1,), "#3cb44b")),
        )
    table = classes if isinstance(classes, ClassTable) else ClassTable.from_json(classes)
    if table.num_classes not in (2, 3):
        raise ValueError(
            f"a glas class table needs 2 classes (background, gland) or 3 (background, benign, "
            f"malignant), {table.name!r} has {table.num_classes}"
        )
    return table


def _glas_files(root: Path) -> dict[str, tuple[Path, Path]]:
    files = _image_files(root, "glas")
    annos = {n[: -len("_anno")]: p for n, p in files.items() if n.endswith("_anno")}
    images = {n: p for n, p in files.items() if not n.endswith("_anno")}
    return _pair(images, annos)


def _glas_grades(root: Path, names: Sequence[str]) -> dict[str, int]:
    """Gland class (1 benign, 2 malignant) per image from ``Grade.csv``."""
    path = root / "Grade.csv"
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except OSError as exc:
        raise ValueError(f"a 3-class glas dataset needs {path}: {exc}") from None
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "name" not in header or "grade (glas)" not in header:
        raise ValueError(f"{path} needs columns 'name' and 'grade (GlaS)', has {header}")
    i_name, i_grade = header.index("name"), header.index("grade (glas)")
    grades = {r[i_name].strip(): r[i_grade].strip().lower() for r in rows[1:] if r}
    missing = sorted(set(names) - set(grades))
    if missing:
        raise ValueError(f"{path} has no grade for {missing}")
    bad = sorted({grades[n] for n in names} - set(_GLAS_GRADES))
    if bad:
        raise ValueError(f"{path} has grades {bad}; expected benign or malignant")
    return {n: 1 + _GLAS_GRADES.index(grades[n]) for n in names}


def _glas_labels(instances: np.ndarray, grade: int | None) -> np.ndarray:
    """Instance ids (0 = background) to class indices: 0 background, gland = grade or 1."""
    gland = instances != 0 if instances.ndim == 2 else np.any(instances[..., :3] != 0, axis=2)
    return gland.astype(np.int64) * (grade or 1)  # (H, W)


def split_labeled(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, list[np.ndarray]]:
    """Keep a random share of the labelled images labelled; the rest lose their masks.

    Args:
        ds: the dataset.
        fraction: share in (0, 1] kept labelled; at least one image stays labelled.
        seed: seeds the choice, so a split is reproducible.

    Returns:
        The labelled subset and the unlabelled pool (the other images, then ``ds.unlabeled``);
        the pool is also the subset's ``unlabeled``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"labelled fraction must be in (0, 1], got {fraction}")
    n = len(ds.names)
    k = max(1, round(fraction * n))
    chosen = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
    keep = [i for i in range(n) if i in chosen]
    pool = [ds.images[i] for i in range(n) if i not in chosen] + list(ds.unlabeled)
    sub = Dataset(
        ds.classes,
        [ds.names[i] for i in keep],
        [ds.images[i] for i in keep],
        [ds.masks[i] for i in keep],
        pool,
        ds.root,
    )
    return sub, pool


# ---- tiling and sampling ----------------------------------------------------------------


def _starts(side: int, tile: int, stride: int) -> list[int]:
    if tile >= side:
        return [0]
    return list(range(0, side - tile, stride)) + [side - tile]


def tile_positions(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Top-left corners ``(top, left)`` of tiles covering an h x w image, row by row.

    Args:
        h, w: image size.
        tile: tile side.
        overlap: pixels shared by neighbouring tiles (stride = tile - overlap); the last
            tile of a row or column is flush with the edge, so it may overlap more.
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(
            f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}"
        )
    stride = tile - overlap
    return [(t, s) for t in _starts(h, tile, stride) for s in _starts(w, tile, stride)]


Window = tuple[int, int, int, int]  # top, left, height, width


@dataclass(frozen=True)
class RawTiles:
    """Tiles as drawn, before their colour jitter is applied.

    The jitter of :class:`TileSampler` is an affine map of each pixel's colour followed by a
    clamp, so a batch travels as uint8 pixels plus one 3x4 map per tile and becomes float
    images on the device that trains on it (:meth:`images`): a quarter of the bytes to copy,
    and the float work runs there.

    Args:
        pixels: (B, H, W, 3) uint8, each tile after its flips and rotation (cut to a window).
        labels: (B, H, W) class indices (uint8, or int64 when they do not fit), or None.
        colour: (B, 3, 4) float32 ``[A | d]``: the image is ``clamp(A @ rgb + d, -1, 1)``.
    """

    pixels: torch.Tensor
    labels: torch.Tensor | None
    colour: torch.Tensor

    def images(self, device: torch.device | str = "cpu", pool: int = 1) -> torch.Tensor:
        """(B, 3, H / pool, W / pool) float images in [-1, 1] on ``device``, channels-last,
        average-pooled by ``pool`` (a coarse scale's image without the full-resolution one).

        On the CPU a pooled image is made in bands of rows that stay in the caches (jitter,
        clamp and pooling of one band at a time), about 3x faster than whole tiles.
        """
        u = self.pixels.to(device)
        b, h, w, _ = u.shape
        colour = self.colour.to(device)
        if pool > 1 and u.device.type == "cpu":
            return self._pooled_bands(u, colour, pool)
        rgb = torch.baddbmm(colour[:, None, :, 3], u.reshape(b, h * w, 3).float(),
                            colour[:, :, :3].transpose(1, 2))  # (B, H*W, 3)
        x = rgb.clamp_(-1, 1).view(b, h, w, 3).permute(0, 3, 1, 2)
        return F.avg_pool2d(x, pool) if pool > 1 else x

    @staticmethod
    def _pooled_bands(u: torch.Tensor, colour: torch.Tensor, pool: int) -> torch.Tensor:
        b, h, w, _ = u.shape
        hp, wp = h // pool, w // pool
        rows = pool * max(1, 64 // pool)  # 64 rows: a band's floats fit in the L2 cache
        out = u.new_empty((b, hp, wp, 3), dtype=torch.float32)
        for i in range(b):
            a, d = colour[i, :, :3].T, colour[i, :, 3]
            for top in range(0, hp * pool, rows):
                band = u[i, top:min(top + rows, hp * pool), : wp * pool]
                rgb = torch.addmm(d, band.reshape(-1, 3).float(), a).clamp_(-1, 1)  # (rows * W, 3)
                out[i, top // pool: top // pool + band.shape[0] // pool] = (
                    rgb.view(-1, pool, wp, pool, 3).mean((1, 3)))
        return out.permute(0, 3, 1, 2)


class TileSampler:
    """Random augmented tiles from the tiling of a list of images (and their masks).

    Args:
        images: uint8 (H, W, 3) images.
        masks: int64 (H, W) class indices per image, or None for unlabelled images.
        tile_size: side T of the tiles; smaller images are reflect-padded (masks edge-padded).
        overlap: overlap of the tiling (see :func:`tile_positions`).
        color_jitter: strength of brightness/contrast/saturation/hue jitter; 0 turns it off.
        seed: seeds the sampler's own random stream.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray] | None,
        tile_size: int,
        overlap: int,
        color_jitter: float,
        seed: int,
    ) -> None:
        if not images:
            raise ValueError("the tile sampler needs at least one image")
        if masks is not None and len(masks) != len(images):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        if color_jitter < 0:
            raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
        self.tile_size, self.color_jitter = tile_size, color_jitter
        self.images = [pad_array(im, (tile_size, tile_size), "reflect") for im in images]
        self.masks = None if masks is None else [_compact(pad_array(m, (tile_size, tile_size), "edge")) for m in masks]
        for i, im in enumerate(self.images):
            if self.masks is not None and self.masks[i].shape != im.shape[:2]:
                raise ValueError(f"image {i} is {im.shape[:2]} but its mask {self.masks[i].shape}")
        self.positions = [tile_positions(*im.shape[:2], tile_size, overlap) for im in self.images]
        # mean colour of every tile of the tiling (flips and rotations keep it): the contrast
        # jitter pivots on the tile's mean luma, whatever window of the tile is kept
        self.means = [[im[t:t + tile_size, s:s + tile_size].reshape(-1, 3).mean(0) for t, s in pos]
                      for im, pos in zip(self.images, self.positions, strict=True)]
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        """The random stream's state, so a resumed run draws the same tiles."""
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]

    def reseed(self, seed: int) -> None:
        """Restart the random stream from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Draw ``batch`` tiles: x (B, 3, T, T) float in [-1, 1], y (B, T, T) long or None."""
        raw = self.sample_raw(batch)
        x = raw.images().contiguous()  # (B, 3, T, T)
        return x, (None if raw.labels is None else raw.labels.long())

    def sample_raw(self, batch: int, window: Window | None = None) -> RawTiles:
        """Draw ``batch`` tiles and keep ``window`` of each (of the tile after its flips and
        rotation; None keeps the whole tile), with their colour maps. The same draws as
        :meth:`sample`: a window of :meth:`sample_raw` is that window of :meth:`sample`."""
        top, left, h, w = window or (0, 0, self.tile_size, self.tile_size)
        if top < 0 or left < 0 or top + h > self.tile_size or left + w > self.tile_size:
            raise ValueError(f"window {window} is not inside a {self.tile_size}-pixel tile")
        pixels = np.empty((batch, h, w, 3), np.uint8)
        labels = None if self.masks is None else np.empty((batch, h, w), self.masks[0].dtype)
        colour = np.empty((batch, 3, 4), np.float32)
        for b in range(batch):
            image, mask, colour[b] = self._one()
            pixels[b] = image[top:top + h, left:left + w]
            if labels is not None and mask is not None:
                labels[b] = mask[top:top + h, left:left + w]
        return RawTiles(torch.from_numpy(pixels), None if labels is None else torch.from_numpy(labels),
                        torch.from_numpy(colour))

    def _one(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """One tile as views (after flips and rotation) and its colour map."""
        i = int(self.rng.integers(len(self.images)))
        p = int(self.rng.integers(len(self.positions[i])))
        top, left = self.positions[i][p]
        window = (slice(top, top + self.tile_size), slice(left, left + self.tile_size))
        image = self.images[i][window]  # (T, T, 3)
        mask = None if self.masks is None else self.masks[i][window]  # (T, T)
        flip_h, flip_v, k = self.rng.integers(2), self.rng.integers(2), int(self.rng.integers(4))
        image, mask = (_geometric(a, bool(flip_h), bool(flip_v), k) for a in (image, mask))
        jitter = self.rng.uniform(-1, 1, 4)  # drawn even when off: same tiles either way
        return image, mask, colour_map(self.color_jitter * jitter, self.means[i][p])


def random_window(tile: int, side: int, align: int, gen: torch.Generator) -> Window:
    """A random ``side`` x ``side`` window of a ``tile``-pixel tile whose corner is a multiple of
    ``align`` (the pyramid's factor), drawn from ``gen`` (top, then left)."""
    top = align * int(torch.randint(0, (tile - side) // align + 1, (1,), generator=gen))
    left = align * int(torch.randint(0, (tile - side) // align + 1, (1,), generator=gen))
    return top, left, side, side


def _compact(mask: np.ndarray) -> np.ndarray:
    """Class indices as uint8 when they fit (a quarter of a tile's bytes to copy per step)."""
    if mask.size and 0 <= mask.min() and mask.max() <= 255:
        return mask.astype(np.uint8)
    return mask


def _geometric(a: np.ndarray | None, flip_h: bool, flip_v: bool, k: int) -> Any:
    """The same flips and rotation for an image (T, T, C) and a mask (T, T), as views."""
    if a is None:
        return None
    if flip_h:
        a = a[:, ::-1]
    if flip_v:
        a = a[::-1]
    return np.rot90(a, k, axes=(0, 1))


# RGB <-> YIQ: saturation scales the chroma plane (I, Q) and hue rotates it.
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


def colour_map(amounts: np.ndarray, mean_rgb: np.ndarray) -> np.ndarray:
    """The colour jitter of one tile as a (3, 4) affine map ``[A | d]`` of its uint8 RGB
    values to [-1, 1] (before the clamp).

    Args:
        amounts: brightness, contrast and saturation changes (factors 1 + a) and the hue
            shift (a fraction of the colour circle), each in [-strength, strength]; zeros
            give ``u / 127.5 - 1``.
        mean_rgb: the tile's mean uint8 colour (contrast pivots on its luma).

    With rgb = u / 255 * brightness, the jittered image in [0, 1] is
    ``M ((rgb - L) * contrast + L)``, where L is the mean luma of rgb and M scales the
    chroma plane by the saturation and rotates it by the hue; in [-1, 1] that is
    ``A u + d`` with ``A = 2 contrast brightness / 255 M`` and ``d = 2 (1 - contrast) L M 1 - 1``.
    """
    if not np.any(amounts):
        return np.hstack([np.eye(3) / 127.5, -np.ones((3, 1))])
    bright, contrast, sat = 1 + amounts[:3]
    angle = 2 * np.pi * amounts[3]
    c, s = np.cos(angle) * sat, np.sin(angle) * sat
    m = _YIQ2RGB @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ _RGB2YIQ  # (3, 3)
    luma = bright * float(_RGB2YIQ[0] @ mean_rgb) / 255
    a = 2 * contrast * bright / 255 * m
    d = 2 * (1 - contrast) * luma * m.sum(axis=1) - 1
    return np.hstack([a, d[:, None]])


# ---- resizing ---------------------------------------------------------------------------


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 (H, W, 3) image to ``size`` = (height, width)."""
    h, w = size
    return np.array(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a mask (H, W) or (H, W, C) of any dtype to (height, width)."""
    h, w = size
    rows = np.minimum(
        ((np.arange(h) + 0.5) * mask.shape[0] / h).astype(np.int64), mask.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(w) + 0.5) * mask.shape[1] / w).astype(np.int64), mask.shape[1] - 1
    )
    return mask[rows[:, None], cols[None, :]]
