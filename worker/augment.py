"""Bulk augmentation: image/mask pairs from a set of masks, restartable pair by pair.

The job's pairs are planned up front: source masks (sorted) x geometric transforms x
variants, pair ``i`` with a seed derived from (job seed, ``i``). Each pair is written as
``images/<stem>.png``, ``masks/<stem>.png`` and last ``records/<i>.json`` (the commit
marker). A rerun skips pairs whose three files exist and regenerates the rest with the same
seeds, so it ends with exactly the planned pairs. ``manifest.jsonl`` is assembled from the
records in index order at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from worker.models import ModelStore
from worker.schemas import AugmentJobRequest
from worker.settings import Settings
from worker.storage import LocalStorage, Storage, open_storage

if TYPE_CHECKING:
    from model.pipeline import Pipeline

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
RECORDS = "records/"
"""Folder of the per-pair records (``records/<index>.json``) in a job's output."""
MAX_PAIR_SEED = 2**31 - 2
TRANSFORMS: dict[str, tuple[str, ...]] = {
    "none": ("id",),
    "flips": ("id", "flip_h", "flip_v"),
    "rotations": ("id", "rot90", "rot180", "rot270"),
    "all": ("id", "rot90", "rot180", "rot270", "flip_h", "flip_v", "transpose", "antitranspose"),
}

Report = Callable[[dict[str, Any]], None]
ShouldStop = Callable[[], bool]


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
        return f"images/{self.stem}.png", f"masks/{self.stem}.png", record_key(self.index)


def record_key(index: int) -> str:
    """Key of pair ``index``'s record in the output."""
    return f"{RECORDS}{index:06d}.json"


def read_records(out: Storage, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """How many pairs an output holds so far and the records of the first ``limit``.

    A pair counts once its record is written (the record is its commit marker), so this
    works while the job is still running.
    """
    keys = [k for k in out.list(RECORDS) if k.endswith(".json")]
    return len(keys), [json.loads(out.read_bytes(k)) for k in keys[:limit]]


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
        return LocalStorage(Path(root))  # recorded by the training run: an operator location
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
        self._labels: tuple[str, np.ndarray] | None = None
        for old, new in (req.relabel or {}).items():  # fail before any work on unknown names
            pipe.classes.index_of(old), pipe.classes.index_of(new)

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

    def labels(self, mask_key: str) -> np.ndarray:
        """Class indices of a source mask after relabelling (the last one is cached)."""
        if self._labels is None or self._labels[0] != mask_key:
            from model.imageio import read_mask

            uri = self.source.uri_for(mask_key)
            raw = read_mask(self.source.read_bytes(mask_key), max_pixels=self.max_pixels, name=uri)
            labels = self.pipe.decode_mask(raw)
            if self.req.relabel:
                labels = self.pipe.classes.relabel(labels, self.req.relabel)
            self._labels = (mask_key, labels)
        return self._labels[1]

    def write_pair(self, pair: Pair) -> None:
        """Generate and write image, mask, then the record that marks the pair complete."""
        labels = transform(self.labels(pair.mask_key), pair.transform)
        image = self.pipe.generate(labels, n=1, seed=pair.seed, noise=self.req.noise, encoding="index").images[0]
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
    from model.pipeline import Pipeline

    name = req.model or settings.default_model
    path = model_path or ModelStore(settings).local_path(name)
    pipe = Pipeline.load(path, device=settings.device)
    if model_path is not None and req.model is None:
        name = pipe.name
    source = source_location(req.source, settings, pipe.metadata, trusted)
    out = open_storage(req.output, settings, trusted=trusted)
    pairs = plan_pairs(list_masks(source), TRANSFORMS[req.transforms], req.variants_per_mask, job_seed)
    return Augmenter(pipe, name, source, out, req, settings.max_pixels).run(pairs, report, should_stop)
