"""Synthetic pairs from masks: the pair plan, geometric transforms, relabelling, generation.

The pure part of bulk augmentation, shared by the augmentation job (``worker.augment``,
which adds storage, resumption and progress) and the augmentation experiment: pairs are
planned up front as source masks (sorted) x geometric transforms x variants, and pair ``i``
is generated with a seed derived from (job seed, ``i``), so the same plan yields the same
pixels wherever it runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model.pipeline import Pipeline

MAX_PAIR_SEED = 2**31 - 2
TRANSFORMS: dict[str, tuple[str, ...]] = {
    "none": ("id",),
    "flips": ("id", "flip_h", "flip_v"),
    "rotations": ("id", "rot90", "rot180", "rot270"),
    "all": ("id", "rot90", "rot180", "rot270", "flip_h", "flip_v", "transpose", "antitranspose"),
}

ReadMask = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class Pair:
    """One planned output pair."""

    index: int
    mask_key: str
    transform: str
    variant: int
    seed: int

    @property
    def stem(self) -> str:
        source = Path(self.mask_key).stem
        shape = "" if self.transform == "id" else f"_{self.transform}"
        return f"{self.index:06d}_{source}{shape}_v{self.variant}"

    @property
    def keys(self) -> tuple[str, str, str]:
        """(image key, mask key, record key) in the output."""
        return f"images/{self.stem}.png", f"masks/{self.stem}.png", f"records/{self.index:06d}.json"


def pair_seed(job_seed: int, index: int) -> int:
    """The seed of pair ``index``: a hash of (job seed, index), stable across runs."""
    digest = hashlib.blake2b(f"{job_seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % MAX_PAIR_SEED


def plan_pairs(mask_keys: list[str], transforms: tuple[str, ...], variants: int, job_seed: int) -> list[Pair]:
    """Every pair of the job in index order: mask, then transform, then variant."""
    combos = [(m, t, v) for m in mask_keys for t in transforms for v in range(variants)]
    return [Pair(i, m, t, v, pair_seed(job_seed, i)) for i, (m, t, v) in enumerate(combos)]


def transform(labels: np.ndarray, name: str) -> np.ndarray:
    """One of the 8 flips/rotations of a (H, W) label map."""
    ops: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "id": lambda a: a,
        "rot90": lambda a: np.rot90(a, 1),
        "rot180": lambda a: np.rot90(a, 2),
        "rot270": lambda a: np.rot90(a, 3),
        "flip_h": np.fliplr,
        "flip_v": np.flipud,
        "transpose": lambda a: a.T,
        "antitranspose": lambda a: np.rot90(a, 2).T,
    }
    return np.ascontiguousarray(ops[name](labels))


class PairMaker:
    """Generates planned pairs with a loaded pipeline; the last source mask is cached.

    Args:
        pipe: the loaded model.
        read_mask: raw mask array (values, indices or palette colours) of a mask key.
        noise: noise scale passed to the generator.
        relabel: class names to replace before generating (``{'low_grade': 'high_grade'}``).
    """

    def __init__(self, pipe: Pipeline, read_mask: ReadMask, noise: float,
                 relabel: dict[str, str] | None = None) -> None:
        self.pipe, self.read_mask, self.noise, self.relabel = pipe, read_mask, noise, relabel or {}
        self._labels: tuple[str, np.ndarray] | None = None
        for old, new in self.relabel.items():  # fail before any work on unknown names
            pipe.classes.index_of(old), pipe.classes.index_of(new)

    def labels(self, mask_key: str) -> np.ndarray:
        """Class indices of a source mask after relabelling (the last one is cached)."""
        if self._labels is None or self._labels[0] != mask_key:
            labels = self.pipe.decode_mask(self.read_mask(mask_key))
            if self.relabel:
                labels = self.pipe.classes.relabel(labels, self.relabel)
            self._labels = (mask_key, labels)
        return self._labels[1]

    def make(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 image (H, W, 3), class indices (H, W)) of one planned pair."""
        labels = transform(self.labels(pair.mask_key), pair.transform)
        image = self.pipe.generate(labels, n=1, seed=pair.seed, noise=self.noise, encoding="index").images[0]
        return image, labels
