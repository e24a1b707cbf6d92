"""The independent reference judge of mask consistency: a baseline segmenter trained only on
the real training tiles (the held-out tiles never enter), never the evaluated model's own S_0.

It trains with the one baseline trainer (:func:`model.baselines.train.train_baseline`) and is
cached on disk under a key of the training data's digest, the class table, the held-out names
and the :class:`JudgeConfig`, so ``histosynth evaluate`` trains it once per data split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.baselines.config import JudgeConfig, baseline_preset
from model.baselines.inference import BaselinePipeline
from model.baselines.train import train_baseline
from model.config import replace, to_dict
from model.training.data import Dataset, resize_image, resize_mask

JUDGE_ARCHS = ("fcdensenet", "fcdensenet-pyramid")


def data_digest(dataset: Dataset) -> str:
    """sha256 over the names, image pixels and decoded masks of a dataset's labelled pairs."""
    h = hashlib.sha256()
    for name, image, mask in zip(dataset.names, dataset.images, dataset.masks, strict=True):
        h.update(name.encode())
        for a in (image, mask.astype(np.int64)):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def judge_identity(train: Dataset, holdout: list[str], cfg: JudgeConfig) -> dict[str, Any]:
    """What the cached judge depends on (its cache key is the digest of this)."""
    return {"data_sha256": data_digest(train), "trained_on": list(train.names),
            "classes": train.classes.to_dict(), "holdout": sorted(holdout), "config": to_dict(cfg)}


def judge_key(identity: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of a :func:`judge_identity`."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _shrunk(train: Dataset, factor: int) -> Dataset:
    def size(a: np.ndarray) -> tuple[int, int]:
        return max(1, a.shape[0] // factor), max(1, a.shape[1] // factor)

    if factor == 1:
        return train
    return Dataset(train.classes, list(train.names), [resize_image(i, size(i)) for i in train.images],
                   [resize_mask(m, size(m)) for m in train.masks], [], train.root)


def _check(train: Dataset, holdout: list[str], cfg: JudgeConfig) -> None:
    if cfg.arch not in JUDGE_ARCHS:
        raise ValueError(f"the judge must be a segmentation baseline ({', '.join(JUDGE_ARCHS)}), "
                         f"got {cfg.arch!r}")
    if cfg.downscale < 1:
        raise ValueError(f"judge downscale must be >= 1, got {cfg.downscale}")
    leaked = sorted(set(train.names) & set(holdout))
    if leaked:
        raise ValueError(f"held-out tiles {leaked} must not train the judge")


def train_judge(train: Dataset, holdout: list[str], cache: str | Path, cfg: JudgeConfig | None = None,
                device: str = "auto", log: Callable[[str], None] | None = None) -> Path:
    """Train the judge on the real training pairs, or reuse the cached one; its serving file.

    Args:
        train: the real training pairs only (full tiles, the evaluated model's class table).
        holdout: names of the held-out tiles (checked absent from ``train``; part of the key).
        cache: folder of cached judges (``judge-<arch>-<key>/``).
        cfg: arch, budget and downscale.
        device: auto, cpu or cuda.
        log: progress lines (default: none).
    """
    cfg = cfg or JudgeConfig()
    _check(train, holdout, cfg)
    identity = judge_identity(train, holdout, cfg)
    run_dir = Path(cache) / f"judge-{cfg.arch}-{judge_key(identity)}"
    done = run_dir / "judge.json"
    if (run_dir / "model.pt").is_file() and done.is_file() and json.loads(done.read_text()) == identity:
        return run_dir / "model.pt"
    if log:
        log(f"training the judge ({cfg.arch}, {cfg.steps} steps) on {', '.join(train.names)} "
            f"into {run_dir}")
    pre = baseline_preset(cfg.arch, cfg.preset)
    model_cfg = replace(pre.model, num_classes=train.classes.num_classes)
    train_cfg = replace(pre.train, steps=cfg.steps, tile_size=cfg.tile_size,
                        tile_overlap=cfg.tile_size // 4, seed=cfg.seed, device=device)
    meta = {"role": "judge", "judge": identity, "held_out": sorted(holdout)}
    result = train_baseline(model_cfg, train_cfg, _shrunk(train, cfg.downscale), run_dir,
                            name=f"judge-{cfg.arch}-{judge_key(identity)}", metadata=meta)
    assert result.model_path is not None
    done.write_text(json.dumps(identity, indent=2))
    return result.model_path


class Judge:
    """A judge serving file behind ``segment``: shrink, segment, scale the labels back.

    Args:
        path: the judge's serving file (from :func:`train_judge`).
        downscale: the factor it was trained at.
        device: auto, cpu or cuda.
    """

    def __init__(self, path: str | Path, downscale: int, device: str = "auto") -> None:
        self.pipe = BaselinePipeline.load(path, device)
        if self.pipe.arch not in JUDGE_ARCHS:
            raise ValueError(f"{path} is a {self.pipe.arch} file, not a segmentation baseline")
        self.downscale = downscale
        self.name, self.sha256 = self.pipe.name, self.pipe.sha256
        self.classes, self.metadata = self.pipe.classes, self.pipe.metadata

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Class indices (H, W) of an RGB uint8 image at its own size."""
        h, w = image.shape[:2]
        small = image if self.downscale == 1 else resize_image(
            image, (max(1, h // self.downscale), max(1, w // self.downscale)))
        return resize_mask(self.pipe.segment(small), (h, w))

    def describe(self) -> dict[str, Any]:
        """Name, digest, arch, downscale and what it was trained on (for reports)."""
        ident = self.metadata.get("judge", {})
        return {"name": self.name, "sha256": self.sha256, "arch": self.pipe.arch,
                "downscale": self.downscale, "trained_on": ident.get("trained_on"),
                "held_out": self.metadata.get("held_out"), "config": ident.get("config")}


def load_judge(train: Dataset, holdout: list[str], cache: str | Path, cfg: JudgeConfig | None = None,
               device: str = "auto", log: Callable[[str], None] | None = None) -> Judge:
    """:func:`train_judge` (or the cached one), loaded as a :class:`Judge`."""
    cfg = cfg or JudgeConfig()
    return Judge(train_judge(train, holdout, cache, cfg, device, log), cfg.downscale, device)
