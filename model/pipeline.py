"""The one inference path (generate, segment) used by the CLI, the API and the jobs.

:func:`load_pipeline` opens any serving file: ours as a :class:`PyramidPipeline`, a
baseline of the paper's comparisons as a :class:`model.baselines.inference.BaselinePipeline`;
both are a :class:`model.inference.Pipeline`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.baselines.inference import BaselinePipeline
from model.baselines.serving import file_arch
from model.checkpoint import load_model
from model.classes import MaskEncoding
from model.device import resolve_device
from model.inference import MAX_SEED, PIXEL_BUDGET, Generation, Pipeline, check_rgb
from model.nets.fuse import TILE, fuse_for_inference
from model.nets.segmenter import PIECE, SEGMENT_TILE, prepare_for_inference
from model.tensors import (
    image_pyramid,
    mask_pyramid,
    noise_maps,
    pad_array_to_multiple,
    to_tensor,
    to_uint8,
)

__all__ = ["MAX_SEED", "PIXEL_BUDGET", "Generation", "Pipeline", "PyramidPipeline", "generate_pyramid",
           "load_pipeline"]


def load_pipeline(path: str | Path, device: str = "auto") -> Pipeline:
    """Load a serving file (``model.pt``) onto ``device`` (auto, cpu or cuda).

    Files of ours load as :class:`PyramidPipeline`, baselines (``arch`` other than ``ours``)
    as :class:`model.baselines.inference.BaselinePipeline`.
    """
    kind = PyramidPipeline if file_arch(path) == "ours" else BaselinePipeline
    return kind(Path(path), resolve_device(device))


class PyramidPipeline(Pipeline):
    """Our model: generator and segmenter pyramids, class table, metadata.

    Args:
        path: the serving file.
        device: where the networks run.
    """

    def __init__(self, path: Path, device: torch.device) -> None:
        loaded = load_model(path, device)
        trained = int(loaded.metadata.get("scales_trained", loaded.config.num_scales))
        if trained < loaded.config.num_scales:
            raise ValueError(f"{path} is partly trained ({trained} of {loaded.config.num_scales} scales); "
                             f"finish it with histosynth train --init-from {path}")
        super().__init__(path, device, loaded.config, loaded.classes, loaded.metadata)
        # BN folded, channels-last; tiled conv stacks on a CPU (cache-sized tiles, same pixels)
        self.generator = fuse_for_inference(loaded.generator, tile=TILE if device.type == "cpu" else None)
        # channels-last; on a CPU each level's dense blocks run in cache-sized pieces (same values)
        self.segmenter = prepare_for_inference(loaded.segmenter, PIECE if device.type == "cpu" else None)
        #: Segmenter scales larger than this run in tiles (bounded memory, same labels); None: whole.
        self.segment_tile: int | None = SEGMENT_TILE

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> PyramidPipeline:
        """Load a serving file of ours onto ``device`` (auto, cpu or cuda)."""
        return cls(Path(path), resolve_device(device))

    # ---- generation -------------------------------------------------------------------
    @torch.inference_mode()
    def _generate_batch(self, labels: np.ndarray, seeds: list[int], noise: float) -> list[np.ndarray]:
        h, w = labels.shape
        x0 = self._pyramid(labels, seeds, noise)[0]  # (B, 3, H', W')
        return list(to_uint8(x0[..., :h, :w]))  # converted where x0 is: a quarter of the bytes to copy

    @torch.inference_mode()
    def _pyramid(self, labels: np.ndarray, seeds: list[int], noise: float) -> list[torch.Tensor]:
        """Every scale's images (B, 3, H'/2**n, W'/2**n) of the padded mask, indexed by n."""
        padded = pad_array_to_multiple(labels, self.config.factor)
        t = torch.from_numpy(padded)[None].long().to(self.device)
        ys, _ = mask_pyramid(t, self.config.num_classes, self.config.num_scales)  # indexed by n
        ys = [y.expand(len(seeds), -1, -1, -1) for y in ys]
        return self.generator(ys, self._noise(ys, seeds, noise), stop_at=0)

    def _noise(self, ys: list[torch.Tensor], seeds: list[int], noise: float) -> list[torch.Tensor]:
        """Per-variant unit noise maps from per-variant CPU generators (device independent)."""
        channels = [self.generator.noise_channels(m) for m in range(len(ys))]
        sizes = [(y.shape[-2], y.shape[-1]) for y in ys]
        # coarsest first, so a variant's coarse noise does not depend on the image size order
        per_variant = [noise_maps(torch.Generator().manual_seed(s), 1, channels, sizes, coarse_first=True)
                       for s in seeds]
        # unit-scale maps: the generator multiplies them by its trained noise_amp
        return [
            (torch.cat([v[m] for v in per_variant]) * noise).to(self.device)  # type: ignore[misc]
            for m in range(len(ys))
        ]

    # ---- segmentation -------------------------------------------------------------------
    @torch.inference_mode()
    def segment(self, image: np.ndarray) -> np.ndarray:
        """Class indices (H, W) of an RGB uint8 image, from S_0 of the segmenter pyramid."""
        if not self.metadata.get("has_segmenter", True):
            raise ValueError(f"model {self.name!r} was trained in generate mode and has no segmenter")
        image = check_rgb(image)
        h, w = image.shape[:2]
        x = to_tensor(pad_array_to_multiple(image, self.config.factor))[None].to(self.device)
        xs = image_pyramid(x, self.config.num_scales)
        labels = self.segmenter.labels(xs, self.segment_tile)  # (1, H', W')
        return np.ascontiguousarray(labels[0, :h, :w].cpu().numpy(), dtype=np.int64)

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


def generate_pyramid(pipe: Pipeline, mask: np.ndarray, seed: int, noise: float = 1.0,
                     encoding: MaskEncoding = "auto") -> list[np.ndarray]:
    """Every scale's image of one sample, coarsest first (for coarse-to-fine figures).

    The finest entry equals ``pipe.generate(mask, 1, seed, noise).images[0]``.
    """
    if not isinstance(pipe, PyramidPipeline):
        raise ValueError(f"model {pipe.name!r} is not a pyramid of ours; it has no coarse-to-fine images")
    labels = pipe.decode_mask(mask, encoding)
    h, w = labels.shape
    xs = pipe._pyramid(labels, [seed], noise)
    out = []
    for n in reversed(range(len(xs))):
        hn, wn = -(-h // 2**n), -(-w // 2**n)
        out.append(to_uint8(xs[n][0, :, :hn, :wn]))
    return out
