"""Bulk augmentation: image/mask pairs from a set of masks, restartable pair by pair.

The job's pairs are planned up front by :mod:`model.augmentation` (source masks (sorted) x
geometric transforms x variants, pair ``i`` with a seed derived from (job seed, ``i``)), which
also generates them; this module adds storage, resumption and progress. Each pair is written as
``images/<stem>.png``, ``masks/<stem>.png`` and last ``records/<i>.json`` (the commit
marker). A rerun skips pairs whose three files exist and regenerates the rest with the same
seeds, so it ends with exactly the planned pairs. ``manifest.jsonl`` is assembled from the
records in index order at the end.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from model.augmentation import (
    MAX_PAIR_SEED,
    TRANSFORMS,
    Pair,
    PairMaker,
    pair_seed,
    plan_pairs,
    transform,
)
from worker.models import ModelStore
from worker.schemas import AugmentJobRequest
from worker.settings import Settings
from worker.storage import Storage, check_output_location, open_storage

if TYPE_CHECKING:
    from model.pipeline import Pipeline

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
__all__ = ["MAX_PAIR_SEED", "TRANSFORMS", "Augmenter", "Pair", "list_masks", "pair_seed", "plan_pairs",
           "run_augment", "source_location", "transform"]

Report = Callable[[dict[str, Any]], None]
ShouldStop = Callable[[], bool]


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of an RGB uint8 image or an 8/16-bit single-channel mask."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


# ---- sources ---------------------------------------------------------------------------
def source_location(source: str, settings: Settings, metadata: dict[str, Any], trusted: bool) -> Storage:
    """Storage holding the source masks; ``training`` resolves through the model metadata."""
    if source != "training":
        return open_storage(source, settings, trusted=trusted)
    root = (metadata.get("dataset") or {}).get("root")
    if root and Path(root).is_dir():
        try:  # recorded by the training run; a request may use it only under the data root
            return open_storage(str(root), settings, trusted=trusted)
        except ValueError as exc:
            raise ValueError(f"source 'training' (the model's dataset): {exc}") from None
    uri = metadata.get("dataset_uri")
    if uri:
        return open_storage(str(uri), settings, trusted=trusted)
    raise ValueError(
        "source 'training' needs the model's training dataset, but its metadata names "
        f"{root or 'no dataset folder'} which does not exist here; give the masks' location instead"
    )


def list_masks(storage: Storage) -> list[str]:
    """Mask keys: those under ``masks/`` when the location is a dataset, else top-level files."""
    keys = [k for k in storage.list() if k.lower().endswith(MASK_SUFFIXES)]
    in_masks = [k for k in keys if k.startswith("masks/") and k.count("/") == 1]
    chosen = in_masks or [k for k in keys if "/" not in k]
    if not chosen:
        raise ValueError(f"no mask files ({', '.join(MASK_SUFFIXES)}) found in {storage.uri}")
    return sorted(chosen)


# ---- the job -----------------------------------------------------------------------------
class Augmenter:
    """Runs the pair plan against a loaded pipeline; state kept for progress reports.

    Args:
        pipe: the loaded model.
        model_name: name recorded in the manifest.
        source: where the masks are.
        out: where pairs and the manifest go.
        req: the job request (noise, relabel, variants, transforms).
        max_pixels: decompression-bomb guard for source masks.
    """

    def __init__(self, pipe: Pipeline, model_name: str, source: Storage, out: Storage,
                 req: AugmentJobRequest, max_pixels: int) -> None:
        self.pipe, self.model_name, self.source, self.out, self.req = pipe, model_name, source, out, req
        self.max_pixels = max_pixels
        self.maker = PairMaker(pipe, self.read_mask, req.noise, req.relabel)

    def run(self, pairs: list[Pair], report: Report, should_stop: ShouldStop) -> dict[str, Any]:
        existing = set(self.out.list())
        written = skipped = 0
        start = time.monotonic()
        for done, pair in enumerate(pairs):
            if should_stop():
                return {"canceled": True, "written": written, "skipped": skipped, "pairs": len(pairs)}
            if set(pair.keys) <= existing:
                skipped += 1
            else:
                self.write_pair(pair)
                written += 1
            elapsed = time.monotonic() - start
            eta = elapsed / max(written, 1) * (len(pairs) - done - 1) if written else None
            report({"done": done + 1, "total": len(pairs), "written": written, "skipped": skipped,
                    "eta_s": None if eta is None else round(eta, 1)})
        self.out.write_bytes("manifest.jsonl", self.manifest(pairs))
        return {"pairs": len(pairs), "written": written, "skipped": skipped, "output": self.out.uri,
                "manifest": self.out.uri_for("manifest.jsonl"), "model": self.model_name,
                "sha256": self.pipe.sha256}

    def read_mask(self, mask_key: str) -> np.ndarray:
        """Raw values of a source mask, with the decompression-bomb guard."""
        from model.imageio import read_mask

        uri = self.source.uri_for(mask_key)
        return read_mask(self.source.read_bytes(mask_key), max_pixels=self.max_pixels, name=uri)

    def write_pair(self, pair: Pair) -> None:
        """Generate and write image, mask, then the record that marks the pair complete."""
        image, labels = self.maker.make(pair)
        image_key, mask_key, record_key = pair.keys
        self.out.write_bytes(image_key, png_bytes(image))
        self.out.write_bytes(mask_key, png_bytes(self.pipe.classes.to_values(labels)))
        record = {
            "index": pair.index, "image": image_key, "mask": mask_key,
            "source_mask": self.source.uri_for(pair.mask_key), "transform": pair.transform,
            "variant": pair.variant, "seed": pair.seed, "noise": self.req.noise,
            "relabel": self.req.relabel or {}, "model": self.model_name, "sha256": self.pipe.sha256,
        }
        self.out.write_bytes(record_key, json.dumps(record, sort_keys=True).encode())

    def manifest(self, pairs: list[Pair]) -> bytes:
        """One JSON line per pair, in index order, from the per-pair records."""
        lines = [json.dumps(json.loads(self.out.read_bytes(p.keys[2])), sort_keys=True) for p in pairs]
        return ("\n".join(lines) + "\n").encode()


def run_augment(
    req: AugmentJobRequest,
    settings: Settings,
    *,
    job_seed: int,
    report: Report,
    should_stop: ShouldStop,
    trusted: bool = False,
    model_path: Path | None = None,
) -> dict[str, Any]:
    """Load the model, plan the pairs and write them (see the module docstring).

    Args:
        job_seed: seed of the whole job (pair seeds derive from it).
        trusted: the caller is the operator (CLI): skip data-root and bucket checks.
        model_path: a serving file to use instead of looking ``req.model`` up in the store.
    """
    from model.pipeline import load_pipeline

    name = req.model or settings.default_model
    path = model_path or ModelStore(settings).local_path(name)
    pipe = load_pipeline(path, device=settings.device)
    if model_path is not None and req.model is None:
        name = pipe.name
    source = source_location(req.source, settings, pipe.metadata, trusted)
    out = open_storage(req.output, settings, trusted=trusted)
    if not trusted:
        check_output_location(out, settings)
    pairs = plan_pairs(list_masks(source), TRANSFORMS[req.transforms], req.variants_per_mask, job_seed)
    return Augmenter(pipe, name, source, out, req, settings.max_pixels).run(pairs, report, should_stop)
