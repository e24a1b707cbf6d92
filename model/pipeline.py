"""The one inference path (generate, segment) used by the CLI, the API and the jobs."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import file_sha256, load_model
from model.classes import MaskEncoding
from model.data import image_pyramid, mask_pyramid, to_tensor, to_uint8
from model.nets.fuse import TILE, fuse_for_inference
from model.train import resolve_device

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


class Pipeline:
    """A loaded model: generator and segmenter pyramids, class table, metadata."""

    def __init__(self, path: Path, device: torch.device) -> None:
        loaded = load_model(path, device)
        trained = int(loaded.metadata.get("scales_trained", loaded.config.num_scales))
        if trained < loaded.config.num_scales:
            raise ValueError(f"{path} is partly trained ({trained} of {loaded.config.num_scales} scales); "
                             f"finish it with histosynth train --init-from {path}")
        self.path = Path(path)
        self.device = device
        self.config = loaded.config
        self.classes = loaded.classes
        self.metadata: dict[str, Any] = loaded.metadata
        # BN folded, channels-last; tiled conv stacks on a CPU (cache-sized tiles, same pixels)
        self.generator = fuse_for_inference(loaded.generator, tile=TILE if device.type == "cpu" else None)
        self.segmenter = loaded.segmenter
        self.name: str = str(self.metadata.get("name", self.path.stem))
        self.sha256 = file_sha256(self.path)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Pipeline:
        """Load a serving file (``model.pt``) onto ``device`` (auto, cpu or cuda).

        Baseline files (``arch`` other than ``ours``) load as
        :class:`model.baselines.inference.BaselinePipeline`, which has this interface.
        """
        from model.baselines.serving import file_arch  # model.baselines imports this module

        if cls is Pipeline and file_arch(path) != "ours":
            from model.baselines.inference import BaselinePipeline

            return BaselinePipeline(Path(path), resolve_device(device))
        return cls(Path(path), resolve_device(device))

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

    @torch.inference_mode()
    def _generate_batch(self, labels: np.ndarray, seeds: list[int], noise: float) -> list[np.ndarray]:
        h, w = labels.shape
        padded = _pad(labels, self.config.factor)
        t = torch.from_numpy(padded)[None].long().to(self.device)
        ys, _ = mask_pyramid(t, self.config.num_classes, self.config.num_scales)  # indexed by n
        ys = [y.expand(len(seeds), -1, -1, -1) for y in ys]
        zs = self._noise(ys, seeds, noise)
        x0 = self.generator(ys, zs, stop_at=0)[0]  # (B, 3, H', W')
        return list(to_uint8(x0[..., :h, :w].float().cpu()))

    def _noise(self, ys: list[torch.Tensor], seeds: list[int], noise: float) -> list[torch.Tensor]:
        """Per-variant unit noise maps from per-variant CPU generators (device independent)."""
        per_variant: list[list[torch.Tensor]] = []
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            # coarsest first, so a variant's coarse noise does not depend on the image size order
            maps = {m: torch.randn(1, self.generator.noise_channels(m), *ys[m].shape[-2:], generator=g)
                    for m in reversed(range(len(ys)))}
            per_variant.append([maps[m] for m in range(len(ys))])
        # unit-scale maps: the generator multiplies them by its trained noise_amp
        return [
            (torch.cat([v[m] for v in per_variant]) * noise).to(self.device)
            for m in range(len(ys))
        ]

    # ---- segmentation -------------------------------------------------------------------
    @torch.inference_mode()
    def segment(self, image: np.ndarray) -> np.ndarray:
        """Class indices (H, W) of an RGB uint8 image, from S_0 of the segmenter pyramid."""
        if not self.metadata.get("has_segmenter", True):
            raise ValueError(f"model {self.name!r} was trained in generate mode and has no segmenter")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"segment needs an RGB uint8 image (H, W, 3), got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        x = to_tensor(_pad(image, self.config.factor))[None].to(self.device)
        xs = image_pyramid(x, self.config.num_scales)
        logits = self.segmenter(xs, None, stop_at=0)[0]
        return logits[0, :, :h, :w].argmax(0).cpu().numpy().astype(np.int64)

    def describe(self) -> dict[str, Any]:
        """Name, classes, scales, training summary and digest, for listings."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "classes": self.classes.to_dict()["classes"],
            "num_classes": self.classes.num_classes,
            "num_scales": self.config.num_scales,
            "factor": self.config.factor,
            "metadata": self.metadata,
        }


def _pad(a: np.ndarray, factor: int) -> np.ndarray:
    """Reflect-pad the bottom/right so both sides are multiples of ``factor``."""
    h, w = a.shape[:2]
    ph, pw = (-h) % factor, (-w) % factor
    if not ph and not pw:
        return a
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
    mode = "reflect" if h > ph and w > pw else "symmetric"
    return np.pad(a, pad, mode=mode)


def generate_pyramid(pipe: Pipeline, mask: np.ndarray, seed: int, noise: float = 1.0,
                     encoding: MaskEncoding = "auto") -> list[np.ndarray]:
    """Every scale's image of one sample, coarsest first (for coarse-to-fine figures).

    The finest entry equals ``pipe.generate(mask, 1, seed, noise).images[0]``.
    """
    labels = pipe.decode_mask(mask, encoding)
    h, w = labels.shape
    t = torch.from_numpy(_pad(labels, pipe.config.factor))[None].long().to(pipe.device)
    ys, _ = mask_pyramid(t, pipe.config.num_classes, pipe.config.num_scales)
    with torch.inference_mode():
        xs = pipe.generator(ys, pipe._noise(ys, [seed], noise), stop_at=0)
    out = []
    for n in reversed(range(len(xs))):
        hn, wn = -(-h // 2**n), -(-w // 2**n)
        out.append(to_uint8(xs[n][0, :, :hn, :wn].float().cpu()))
    return out
