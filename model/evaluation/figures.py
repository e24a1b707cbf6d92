"""README figures: noise variants with a zoomed inset, the coarse-to-fine pyramid of one
sample, and a grade manipulation pair (``histosynth figures``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from model.arguments import csv_ints, resolve_model
from model.pipeline import Pipeline, generate_pyramid, load_pipeline
from model.report import image_grid

Box = tuple[int, int, int]  # top, left, side


def _resize(img: np.ndarray, side: int, nearest: bool = False) -> np.ndarray:
    mode = Image.NEAREST if nearest else Image.LANCZOS
    return np.asarray(Image.fromarray(img).resize((side, side), mode))


def _outline(img: np.ndarray, box: Box, scale: float) -> np.ndarray:
    pil = Image.fromarray(img.copy())
    top, left, side = (int(v * scale) for v in box)
    ImageDraw.Draw(pil).rectangle([left, top, left + side, top + side], outline=(0, 0, 0), width=3)
    return np.asarray(pil)


def variants_figure(pipe: Pipeline, labels: np.ndarray, seeds: list[int], box: Box,
                    real: np.ndarray | None = None, thumb: int = 512) -> np.ndarray:
    """Row 1: mask | variants (| real), downscaled to ``thumb`` with the inset outlined;
    row 2: the inset of each at native resolution, zoomed to ``thumb`` (nearest)."""
    images = [pipe.generate(labels, 1, seed=s, encoding="index").images[0] for s in seeds]
    columns = [pipe.classes.to_color(labels), *images] + ([real] if real is not None else [])
    top, left, side = box
    scale = thumb / labels.shape[0]
    row1 = [_outline(_resize(c, thumb), box, scale) for c in columns]
    row2 = [_resize(c[top:top + side, left:left + side], thumb, nearest=True) for c in columns]
    return image_grid([row1, row2])


def pyramid_figure(pipe: Pipeline, labels: np.ndarray, seed: int, side: int = 320) -> np.ndarray:
    """Each scale's output of one sample, coarsest to finest, shown at the same size."""
    scales = generate_pyramid(pipe, labels, seed, encoding="index")
    return image_grid([[_resize(s, side, nearest=True) for s in scales]])


def manipulation_figure(pipe: Pipeline, labels: np.ndarray, relabelled: np.ndarray, seed: int,
                        thumb: int = 512) -> tuple[np.ndarray, dict[str, Any]]:
    """mask | image, relabelled mask | image (same seed), and S_0 class shares of both."""
    shares: dict[str, Any] = {}
    rows = []
    for key, lab in (("original", labels), ("relabelled", relabelled)):
        image = pipe.generate(lab, 1, seed=seed, encoding="index").images[0]
        rows.append([_resize(pipe.classes.to_color(lab), thumb), _resize(image, thumb)])
        if pipe.metadata.get("has_segmenter", True):
            seg = pipe.segment(image)
            counts = np.bincount(seg.ravel(), minlength=pipe.classes.num_classes) / seg.size
            shares[key] = {n: round(float(c), 4) for n, c in zip(pipe.classes.names, counts, strict=True)}
    return image_grid(rows), shares


def _save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=88) if path.suffix == ".jpg" else Image.fromarray(array).save(path)
    print(path)
    return path


def cmd_figures(args: argparse.Namespace) -> int:
    import json

    from model.training.data import read_image, read_mask

    pipe = load_pipeline(resolve_model(args.model), args.device)
    labels = pipe.decode_mask(read_mask(args.mask))
    real = read_image(args.image) if args.image else None
    if real is not None and real.shape[:2] != labels.shape:
        raise ValueError(f"--image is {real.shape[1]}x{real.shape[0]} but --mask is {labels.shape[1]}x{labels.shape[0]}")
    out, stem = Path(args.out), pipe.name
    top, left = args.inset
    box = (top, left, min(256, labels.shape[0] - top, labels.shape[1] - left))
    _save(variants_figure(pipe, labels, args.seeds, box, real), out / f"{stem}-variants.jpg")
    _save(pyramid_figure(pipe, labels, args.seeds[0]), out / f"{stem}-pyramid.jpg")
    full = pipe.generate(labels, 1, seed=args.seeds[0], encoding="index").images[0]
    _save(full, out / f"{stem}-full.jpg")
    if args.relabel:
        mapping = dict(pair.split("=", 1) for pair in args.relabel.split(","))
        fig, shares = manipulation_figure(pipe, labels, pipe.classes.relabel(labels, mapping), args.seeds[0])
        _save(fig, out / f"{stem}-manipulation.jpg")
        (out / f"{stem}-manipulation.json").write_text(json.dumps({"relabel": mapping, "s0_class_shares": shares}, indent=2))
        print(json.dumps(shares))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("figures", help="README figures: variants with inset, pyramid, grade manipulation")
    p.add_argument("--model", required=True)
    p.add_argument("--mask", required=True, help="mask file (raw values or palette colours)")
    p.add_argument("--image", help="the real image of the mask, shown as the last column")
    p.add_argument("--seeds", type=csv_ints, default=[0, 1, 2], help="one variant per seed")
    p.add_argument("--inset", type=csv_ints, default=[384, 384], help="top,left of the 256x256 inset")
    p.add_argument("--relabel", help="e.g. low_grade=high_grade for the manipulation pair")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="docs/figures")
    p.set_defaults(func=cmd_figures)
