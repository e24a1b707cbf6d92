"""What every loaded serving file offers the CLI, the API and the jobs: :class:`Pipeline`.

Our pyramid (:class:`model.pipeline.PyramidPipeline`) and the paper's baselines
(:class:`model.baselines.inference.BaselinePipeline`) implement it;
:func:`model.pipeline.load_pipeline` picks the one a file needs.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import file_sha256
from model.classes import ClassTable, MaskEncoding

MAX_SEED = 2**31 - 1
#: Variants are generated as one batch while batch x pixels stays under this budget;
#: beyond it they run in chunks (each variant's noise comes from its own seed, so the
#: pixels do not depend on the chunking).
PIXEL_BUDGET = 4 * 1024 * 1024


@dataclass
class Generation:
    """Images of one request and the seed of each (variant i used ``seed + i``)."""

    images: list[np.ndarray]
    seeds: list[int]
    seed: int


class Pipeline(ABC):
    """A loaded model: class table, metadata and the generate / segment / describe calls.

    Args:
        path: the serving file.
        device: where the networks run.
        config: the model configuration stored in the file.
        classes: its class table.
        metadata: what training stored (name, held-out images, ...).
    """

    generator: Any  #: the generator network(s); None for a segmentation-only baseline
    segmenter: Any  #: the segmenter network(s); None for a generation-only baseline

    def __init__(self, path: Path, device: torch.device, config: Any, classes: ClassTable,
                 metadata: dict[str, Any]) -> None:
        self.path = Path(path)
        self.device = device
        self.config = config
        self.classes = classes
        self.metadata = metadata
        self.name: str = str(metadata.get("name", self.path.stem))
        self.sha256 = file_sha256(self.path)

    # ---- masks ------------------------------------------------------------------------
    def decode_mask(self, mask: np.ndarray, encoding: MaskEncoding = "auto") -> np.ndarray:
        """Class indices (H, W) from raw values, indices or palette colours."""
        labels = self.classes.decode(mask, encoding)
        if min(labels.shape) < 1:
            raise ValueError("mask is empty")
        return labels

    # ---- generation -------------------------------------------------------------------
    def generate(self, mask: np.ndarray, n: int = 1, seed: int | None = None, noise: float = 1.0,
                 encoding: MaskEncoding = "auto") -> Generation:
        """``n`` images that follow ``mask`` and differ by their noise.

        Args:
            mask: raw-value or index (H, W) array, or (H, W, 3) palette colours (see ``encoding``).
            n: number of variants (>= 1).
            seed: variant i uses ``seed + i``; None draws a random seed (reported back).
            noise: scales the trained noise amplitudes (0 = deterministic, 1 = as trained).
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not np.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a finite number >= 0, got {noise}")
        if seed is None:
            seed = secrets.randbelow(MAX_SEED - 64)
        if not 0 <= seed <= MAX_SEED - n:
            raise ValueError(f"seed must be between 0 and {MAX_SEED - n}, got {seed}")
        labels = self.decode_mask(mask, encoding)
        seeds = [seed + i for i in range(n)]
        h, w = labels.shape
        chunk = max(1, PIXEL_BUDGET // (h * w))
        images: list[np.ndarray] = []
        for start in range(0, n, chunk):
            images += self._generate_batch(labels, seeds[start:start + chunk], noise)
        return Generation(images=images, seeds=seeds, seed=seed)

    @abstractmethod
    def _generate_batch(self, labels: np.ndarray, seeds: list[int], noise: float) -> list[np.ndarray]:
        """One uint8 (H, W, 3) image per seed for class indices ``labels`` (H, W)."""

    # ---- segmentation and listing -------------------------------------------------------
    @abstractmethod
    def segment(self, image: np.ndarray) -> np.ndarray:
        """Class indices (H, W) of an RGB uint8 image (H, W, 3)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Name, classes, scales, training summary and digest, for listings."""


def check_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as an array if it is RGB uint8 (H, W, 3), else a ValueError naming its shape."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"segment needs an RGB uint8 image (H, W, 3), got {image.shape} {image.dtype}")
    return image
