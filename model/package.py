"""``histosynth package``: turn a run's serving file into a shippable model file.

The output holds only what inference needs (generators, segmenters, noise amplitudes,
classes, config, training summary), optionally in float16, plus the evaluation report and
the data provenance in its metadata.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model.checkpoint import file_sha256, load_model, save_model, weights_sha256


def package(model: Path, out: Path, *, name: str | None = None, half: bool = True,
            evaluation: dict[str, Any] | None = None, provenance: str | None = None) -> Path:
    """Rewrite a serving file with extra metadata (and float16 weights when ``half``).

    Args:
        model: serving file of a run (``model.pt``).
        out: where to write the packaged file.
        name: model name (default: the one stored).
        evaluation: a ``histosynth evaluate`` report to store under ``evaluation``; when it
            records ``weights_sha256``, the packaged weights must have that digest.
        provenance: where the training data came from and under which terms.
    """
    m = load_model(model)
    meta = dict(m.metadata)
    meta.update({"name": name or meta.get("name", out.stem), "packaged": datetime.now(UTC).isoformat(timespec="seconds"),
                 "weights": "float16" if half else "float32", "source_sha256": file_sha256(model)})
    if evaluation is not None:
        meta["evaluation"] = evaluation
    if provenance:
        meta["data_provenance"] = provenance
    path = save_model(out, m.generator, m.segmenter, m.config, m.classes, meta, half=half)
    evaluated = (evaluation or {}).get("model", {}).get("weights_sha256")
    if evaluated and evaluated != weights_sha256(path):
        path.unlink()
        raise ValueError(f"the evaluation report is of other weights ({evaluated[:12]}) than "
                         f"{model} packaged {'in float16' if half else 'in float32'}; "
                         "evaluate the packaged weights")
    return path


def max_pixel_difference(a: Path, b: Path, size: int = 512, seed: int = 0) -> float:
    """Largest per-pixel difference between two model files' images of a random mask."""
    from model.pipeline import load_pipeline

    pa, pb = load_pipeline(a, "cpu"), load_pipeline(b, "cpu")
    rng = np.random.default_rng(seed)
    labels = np.kron(rng.integers(0, pa.classes.num_classes, (size // 32, size // 32)), np.ones((32, 32), np.int64))
    x = pa.generate(labels, 1, seed=seed, encoding="index").images[0].astype(int)
    y = pb.generate(labels, 1, seed=seed, encoding="index").images[0].astype(int)
    return float(np.abs(x - y).max())


def cmd_package(args: argparse.Namespace) -> int:
    evaluation = json.loads(Path(args.evaluation).read_text()) if args.evaluation else None
    provenance = Path(args.provenance[1:]).read_text().strip() if args.provenance and args.provenance.startswith("@") else args.provenance
    out = package(Path(args.model), Path(args.out), name=args.name, half=not args.float32,
                  evaluation=evaluation, provenance=provenance)
    summary = f"{out}: {out.stat().st_size / 2**20:.1f} MiB, sha256 {file_sha256(out)}"
    packed = load_model(out)
    trained = int(packed.metadata.get("scales_trained", packed.config.num_scales))
    if trained < packed.config.num_scales:  # no images to compare: continue it with --init-from
        print(f"{summary} (partly trained: {trained} of {packed.config.num_scales} scales)")
        return 0
    diff = max_pixel_difference(Path(args.model), out)
    print(f"{summary}, largest pixel difference to the source file: {diff:.0f}/255")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("package", help="make a shippable model file (float16, evaluation, provenance)")
    p.add_argument("--model", required=True, help="a run's model.pt")
    p.add_argument("--out", required=True, help="e.g. models/prostate-gleason.pt")
    p.add_argument("--name", help="model name (default: the stored one)")
    p.add_argument("--evaluation", help="JSON report of histosynth evaluate to store")
    p.add_argument("--provenance", help="data provenance text, or @file to read it from a file")
    p.add_argument("--float32", action="store_true", help="keep float32 weights")
    p.set_defaults(func=cmd_package)
