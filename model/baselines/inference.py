"""Baselines behind the one inference path: :class:`BaselinePipeline` is a
:class:`model.inference.Pipeline` (same ``generate``/``segment``/``describe``) over a baseline
serving file. :func:`model.pipeline.load_pipeline` returns one for files with a baseline ``arch``.

pix2pix and pix2pixHD take no noise: every variant of a request is the same image (the seeds
are still reported, and ``describe()`` says ``stochastic: False``). Segmentation baselines
cannot generate and generation baselines cannot segment: both are a clear ValueError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.baselines.nets import GENERATOR_ARCHS
from model.baselines.serving import load_baseline
from model.classes import MaskEncoding
from model.device import resolve_device
from model.inference import Generation, Pipeline, check_rgb
from model.nets.blocks import crop, one_hot, pad_to_multiple
from model.tensors import image_pyramid, to_tensor, to_uint8


class BaselinePipeline(Pipeline):
    """A loaded baseline exposing the :class:`Pipeline` interface.

    Args:
        path: the serving file.
        device: where the networks run.
    """

    def __init__(self, path: Path, device: torch.device) -> None:
        loaded = load_baseline(path, device)
        super().__init__(path, device, loaded.config, loaded.classes, loaded.metadata)
        self.arch = loaded.config.arch
        self.generator: Any = loaded.generator
        if self.generator is not None and device.type == "cuda":
            self.generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.segmenter: Any = loaded.segmenter

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> BaselinePipeline:
        """Load a baseline serving file onto ``device`` (auto, cpu or cuda)."""
        return cls(Path(path), resolve_device(device))

    @property
    def can_generate(self) -> bool:
        return self.generator is not None

    @property
    def can_segment(self) -> bool:
        return self.segmenter is not None

    def generate(
        self,
        mask: np.ndarray,
        n: int = 1,
        seed: int | None = None,
        noise: float = 1.0,
        encoding: MaskEncoding = "auto",
    ) -> Generation:
        """As :meth:`Pipeline.generate`; the variants are identical (no noise input)."""
        if not self.can_generate:
            raise ValueError(
                f"model {self.name!r} is a {self.arch} segmentation baseline and "
                "cannot generate images; use segment"
            )
        return super().generate(mask, n=n, seed=seed, noise=noise, encoding=encoding)

    def variants_per_batch(self, n: int, pixels: int) -> int:
        """All of them: the variants are copies of one forward pass."""
        return n

    @torch.inference_mode()
    def _generate_batch(
        self, labels: np.ndarray, seeds: list[int], noise: float
    ) -> list[np.ndarray]:
        """One forward pass; every seed gets a copy (the generator ignores seed and noise)."""
        t = torch.from_numpy(labels)[None].long().to(self.device)  # (1, H, W)
        y = one_hot(t, self.classes.num_classes)  # (1, K, H, W); the nets pad internally
        if self.device.type == "cuda":
            y = y.contiguous(memory_format=torch.channels_last)
        image = to_uint8(self.generator(y)[0])  # (H, W, 3), converted on the device
        return [image.copy() for _ in seeds]

    @torch.inference_mode()
    def segment(self, image: np.ndarray) -> np.ndarray:
        """Class indices (H, W) of an RGB uint8 image."""
        if not self.can_segment:
            raise ValueError(
                f"model {self.name!r} is a {self.arch} generation baseline and has "
                "no segmenter; use generate"
            )
        x = to_tensor(check_rgb(image))[None].to(self.device)  # (1, 3, H, W)
        if self.arch == "fcdensenet-pyramid":
            padded, size = pad_to_multiple(x, self.factor)
            xs = image_pyramid(padded, self.config.num_scales)
            logits = crop(self.segmenter(xs, None, stop_at=0)[0], size)  # (1, K, H, W)
        else:
            logits = self.segmenter(x)  # MiniFCDenseNet pads internally
        return logits[0].argmax(0).cpu().numpy().astype(np.int64)

    @property
    def factor(self) -> int:
        """Inputs are padded to a multiple of this (and cropped back)."""
        cfg = self.config
        if self.arch == "pix2pix":
            return 2**cfg.unet.depth
        if self.arch == "pix2pixhd":
            return 2**cfg.global_generator.num_down
        if self.arch == "fcdensenet-pyramid":
            return 2 ** (cfg.num_scales - 1)
        return 2 ** len(cfg.segmenter.down_layers)

    def describe(self) -> dict[str, Any]:
        """As :meth:`Pipeline.describe`, plus arch, what the model can do and a diversity note."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "arch": self.arch,
            "classes": self.classes.to_dict()["classes"],
            "num_classes": self.classes.num_classes,
            "num_scales": self.config.num_scales if self.arch == "fcdensenet-pyramid" else 1,
            "factor": self.factor,
            "can_generate": self.can_generate,
            "can_segment": self.can_segment,
            "stochastic": False,
            "note": (
                "no noise input: every variant of a mask is the same image"
                if self.arch in GENERATOR_ARCHS
                else "segmentation only"
            ),
            "metadata": self.metadata,
        }
