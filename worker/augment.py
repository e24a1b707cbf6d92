"""Bulk augmentation: image/mask pairs from a set of masks, restartable pair by pair.

The job's pairs are planned up front by :mod:`model.augmentation` (source masks (sorted) x
geometric transforms x variants, pair ``i`` with a seed derived from (job seed, ``i``)),
which also generates them; this module adds sources, storage, resumption and progress. Any
contiguous range of pairs (a shard, see :mod:`worker.fanout`) can be planned from the
masks it uses alone.
Where and how pairs are written, and what marks one as complete, is the output layout's
business (:mod:`worker.layouts`): a rerun skips complete pairs and regenerates the rest
with the same seeds, so it ends with exactly the planned pairs. ``manifest.jsonl`` is
assembled from the per-pair (or per-tar) records in index order at the end.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from model.augmentation import (
    MAX_PAIR_SEED,
    RECORDS,
    TRANSFORMS,
    Pair,
    PairMaker,
    pair_seed,
    plan_pairs,
    record_key,
    transform,
)
from worker.layouts import Counter, Layout, Report, Sample, ShouldStop, open_layout
from worker.models import ModelStore
from worker.schemas import AugmentJobRequest
from worker.settings import Settings
from worker.storage import Storage, check_output_location, open_storage

if TYPE_CHECKING:
    from model.pipeline import Pipeline

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
__all__ = ["MAX_PAIR_SEED", "TRANSFORMS", "Augmenter", "Pair", "list_masks", "pair_seed", "plan_pairs",
           "prepare", "read_records", "record_key", "run_augment", "source_location", "transform"]


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of an RGB uint8 image or an 8/16-bit single-channel mask."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def read_records(out: Storage, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """How many pairs an output holds so far and the records of the first ``limit``.

    A pair counts once its record is written (the record is its commit marker), so this
    works while the job is still running.
    """
    keys = [k for k in out.list(RECORDS) if k.endswith(".json")]
    return len(keys), [json.loads(out.read_bytes(k)) for k in keys[:limit]]


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
    """Makes the samples of planned pairs with a loaded pipeline (generation: model.augmentation).

    Args:
        pipe: the loaded model.
        model_name: name recorded in the manifest.
        source: where the masks are.
        req: the job request (noise, relabel, transforms).
        max_pixels: decompression-bomb guard for source masks.
    """

    def __init__(self, pipe: Pipeline, model_name: str, source: Storage, req: AugmentJobRequest,
                 max_pixels: int) -> None:
        self.pipe, self.model_name, self.source, self.req = pipe, model_name, source, req
        self.max_pixels = max_pixels
        self.maker = PairMaker(pipe, self.read_mask, req.noise, req.relabel)

    def read_mask(self, mask_key: str) -> np.ndarray:
        """Raw values of a source mask, with the decompression-bomb guard."""
        from model.imageio import read_mask

        uri = self.source.uri_for(mask_key)
        return read_mask(self.source.read_bytes(mask_key), max_pixels=self.max_pixels, name=uri)

    def sample(self, pair: Pair) -> Sample:
        """Generate one pair: the image and mask as PNG and its manifest fields."""
        image, labels = self.maker.make(pair)
        record = {
            "index": pair.index, "source_mask": self.source.uri_for(pair.mask_key),
            "transform": pair.transform, "variant": pair.variant, "seed": pair.seed,
            "noise": self.req.noise, "relabel": self.req.relabel or {}, "model": self.model_name,
            "sha256": self.pipe.sha256,
        }
        return Sample(pair.stem, png_bytes(image), png_bytes(self.pipe.classes.to_values(labels)), record)


@dataclass
class Prepared:
    """A loaded model, the source, the output layout and the sorted mask keys of a job."""

    augmenter: Augmenter
    layout: Layout
    masks: list[str]

    def pairs(self, job_seed: int) -> list[Pair]:
        req = self.augmenter.req
        return plan_pairs(self.masks, TRANSFORMS[req.transforms], req.variants_per_mask, job_seed)

    def result(self, pairs: int, written: int, skipped: int) -> dict[str, Any]:
        """The job's result once all ``pairs`` are complete and the manifest is written."""
        a = self.augmenter
        return {"pairs": pairs, "written": written, "skipped": skipped, "output": self.layout.out.uri,
                "format": a.req.output_format, "manifest": self.layout.out.uri_for("manifest.jsonl"),
                "model": a.model_name, "sha256": a.pipe.sha256}


def prepare(
    req: AugmentJobRequest, settings: Settings, *, trusted: bool = False, model_path: Path | None = None,
    list_source: bool = True,
) -> Prepared:
    """Load the model and open source and output (user errors raise ValueError/KeyError here).

    Args:
        trusted: the caller is the operator (CLI): skip data-root and bucket checks.
        model_path: a serving file to use instead of looking ``req.model`` up in the store.
        list_source: list the source masks (shards get theirs in the payload).
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
    layout = open_layout(req, out)
    augmenter = Augmenter(pipe, name, source, req, settings.max_pixels)
    return Prepared(augmenter, layout, list_masks(source) if list_source else [])


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
    """Write every pair and the manifest in this process (the CLI; no shards, no Redis).

    Args:
        job_seed: seed of the whole job (pair seeds derive from it).
        trusted: the caller is the operator (CLI): skip data-root and bucket checks.
        model_path: a serving file to use instead of looking ``req.model`` up in the store.
    """
    job = prepare(req, settings, trusted=trusted, model_path=model_path)
    pairs = job.pairs(job_seed)
    counter = Counter(len(pairs), report, should_stop)
    if not job.layout.write(pairs, job.augmenter.sample, counter):
        return {"canceled": True, "written": counter.written, "skipped": counter.skipped, "pairs": len(pairs)}
    job.layout.write_manifest(len(pairs))
    return job.result(len(pairs), counter.written, counter.skipped)
