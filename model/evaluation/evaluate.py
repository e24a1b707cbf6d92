"""Evaluate a trained pipeline on held-out tiles: the paper's section 4.2.2 and 4.3.1 measures.

For each held-out tile (a centre crop), ``variants`` images are generated from its mask with
different noise. The report holds, each beside a real-data reference where one exists:

- ``segmentation``: the pipeline's segmenter S_0 on the real held-out crops (Jaccard per class,
  mIoU, OPA, SMA; GlaS object metrics for binary models);
- ``mask_consistency``: a segmenter's scores on generated images versus on the real crops;
- ``realism``: SWD generated vs real, beside SWD real training crops vs real held-out crops;
- ``diversity``: MS-SSIM between variants of one mask and between variants and the real crop;
- ``manipulation`` (with ``relabel``): class shares that the segmenter finds in images
  generated from relabelled masks (paper Fig. 4c);
- ``fid``: FID/KID generated vs real (and training vs held-out) under a named extractor;
- ``two_sample``: a small CNN trained from scratch tells generated from real 64 px patches
  (scored on image halves it did not train on), beside the same test between the real training
  and held-out crops (the real-vs-real floor); 0.5 = indistinguishable;
- ``nuclei``: nuclei by colour deconvolution (count per megapixel, mean area), generated / real
  overall and per class region, beside training / held-out real (the floor);
- ``detail_colour``: the share of the fine detail's colour variance (2 and 8 px) off its first
  colour axis, and the detail's variance, generated and real, beside training / held-out real;
- ``independent_judge``: mask consistency judged by a reference segmenter trained only on the
  real training tiles (never the model's own S_0): mIoU on generated / on the real crops.

``targets`` holds issue 10's acceptance targets beside the numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from model.config import NucleiConfig, TwoSampleConfig
from model.evaluation import metrics as M
from model.evaluation.realism import compare_detail_colour
from model.evaluation.realism_report import (
    TARGETS,
    fmt,
    nuclei_section,
    realism_lines,
    two_sample_section,
)

if TYPE_CHECKING:
    from model.pipeline import Pipeline
    from model.training.data import Dataset

Images = list[np.ndarray]

# ---- selection and crops -------------------------------------------------------------------


def center_crop(array: np.ndarray, crop: int | None) -> np.ndarray:
    """Centre crop of side ``crop`` (clipped to the array's size); None keeps the whole array.

    Args:
        array: (H, W) or (H, W, C).
        crop: side in pixels, or None.
    """
    if crop is None:
        return array
    h, w = array.shape[:2]
    ch, cw = min(crop, h), min(crop, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return array[top : top + ch, left : left + cw]


def _indices(dataset: Dataset, names: Sequence[str], what: str) -> list[int]:
    unknown = [n for n in names if n not in dataset.names]
    if unknown:
        raise ValueError(f"{what} names {unknown} are not in the dataset ({', '.join(dataset.names)})")
    return [dataset.names.index(n) for n in names]


def split_names(dataset: Dataset, holdout: Sequence[str], train_names: Sequence[str] | None
                ) -> tuple[list[int], list[int]]:
    """Indices of the held-out and the training images; ValueError naming unknown or shared names.

    Args:
        dataset: the labelled data.
        holdout: held-out names.
        train_names: training names (None: every other image).
    """
    if not holdout:
        raise ValueError("evaluate needs at least one held-out image name")
    held = _indices(dataset, holdout, "held-out")
    if train_names is None:
        train_names = [n for n in dataset.names if n not in holdout]
    overlap = sorted(set(train_names) & set(holdout))
    if overlap:
        raise ValueError(f"images {overlap} are both held out and training images")
    return held, _indices(dataset, train_names, "training")


class HeldOut(NamedTuple):
    """Centre crops of the held-out images and masks, and of the real training ones (the floors)."""

    held: list[int]
    train: list[int]
    real: Images
    masks: Images
    train_real: Images
    train_masks: Images


def held_out_crops(dataset: Dataset, holdout: Sequence[str], train_names: Sequence[str] | None,
                   crop: int | None) -> HeldOut:
    """:func:`split_names`, then the centre crops (``crop`` side, None: whole) of both sides."""
    held, train = split_names(dataset, holdout, train_names)

    def cut(arrays: Sequence[np.ndarray], indices: list[int]) -> Images:
        return [center_crop(arrays[i], crop) for i in indices]

    return HeldOut(held, train, cut(dataset.images, held), cut(dataset.masks, held),
                   cut(dataset.images, train), cut(dataset.masks, train))


def _check_classes(dataset: Dataset, **models: Any) -> None:
    for role, model in models.items():
        if model is not None and list(model.classes.names) != list(dataset.classes.names):
            raise ValueError(
                f"the {role} model's classes {model.classes.names} differ from the dataset's "
                f"{dataset.classes.names}; load the data with the model's class table (--classes)"
            )


def _has_segmenter(model: Any) -> bool:
    return bool(getattr(model, "metadata", {}).get("has_segmenter", True))


# ---- the parts of the report ---------------------------------------------------------------


def generate_variants(pipeline: Pipeline, masks: Images, variants: int, seed: int) -> list[Images]:
    """``variants`` images per mask; mask i uses seeds ``seed + i * variants + k``."""
    out = []
    for i, mask in enumerate(masks):
        gen = pipeline.generate(mask, n=variants, seed=seed + i * variants, encoding="index")
        for image in gen.images:
            if image.shape[:2] != mask.shape:
                raise ValueError(f"generated image {image.shape[:2]} differs from its mask {mask.shape}")
        out.append(list(gen.images))
    return out


def _segmentation(pipeline: Pipeline, real: Images, masks: Images, names: list[str]
                  ) -> dict[str, Any]:
    if not _has_segmenter(pipeline):
        return {"skipped": "the model has no segmenter (trained in generate mode)"}
    preds = [pipeline.segment(im) for im in real]
    scores = M.segmentation_scores(preds, masks, len(names), names)
    if len(names) == 2:
        scores["objects"] = M.object_scores(preds, masks)
    return scores


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _consistency(judge: Any, generated: list[Images], real: Images, masks: Images,
                 names: list[str], real_scores: dict[str, Any] | None) -> dict[str, Any]:
    """``real_scores``: the judge's scores on the real crops when already known."""
    if not _has_segmenter(judge):
        return {"skipped": "the segmenter model has no segmenter; pass one with --segmenter"}
    gen_masks = [m for m, group in zip(masks, generated, strict=True) for _ in group]
    flat = [im for group in generated for im in group]
    gen = M.mask_consistency(judge.segment, flat, gen_masks, len(names), names)
    if real_scores is not None and "miou" in real_scores:
        ref = {k: v for k, v in real_scores.items() if k != "objects"}
    else:
        ref = M.mask_consistency(judge.segment, real, masks, len(names), names)
    return {"segmenter": judge.name, "generated": gen, "real": ref,
            "ratio_miou": _ratio(gen["miou"], ref["miou"])}


def _independent(judge: Any, pipeline: Pipeline, generated: list[Images], real: Images,
                 masks: Images, names: list[str]) -> dict[str, Any]:
    if judge is None:
        return {"skipped": "no independent judge (histosynth evaluate --judge train)"}
    if judge.sha256 == pipeline.sha256:
        raise ValueError("the independent judge must not be the evaluated model itself")
    if list(judge.classes.names) != names:
        raise ValueError(f"the judge's classes {judge.classes.names} differ from the data's {names}")
    out = _consistency(judge, generated, real, masks, names, None)
    describe = getattr(judge, "describe", None)
    return {**out, "judge": describe() if describe else {"name": judge.name, "sha256": judge.sha256}}


def swd_section(generated: Images, real: Images, train: Images, seed: int) -> dict[str, Any]:
    """Sliced Wasserstein distance of generated and of real training crops to the real held-out ones."""
    sides = [min(im.shape[:2]) for im in [*generated, *real, *train]]
    levels = M.swd_levels(min(sides))
    gen = M.sliced_wasserstein(generated, real, levels=levels, seed=seed)
    base = M.sliced_wasserstein(train, real, levels=levels, seed=seed) if train else None
    return {"swd_generated_vs_real": gen, "swd_train_vs_real": base,
            "ratio": _ratio(gen["mean"], base["mean"] if base else None), "units": "SWD x 1e3"}


def diversity_section(generated: list[Images], real: Images, names: list[str]) -> dict[str, Any]:
    """MS-SSIM between the variants of each mask (``generated`` grouped per mask) and to its real crop."""
    rows = []
    for name, group, ref in zip(names, generated, real, strict=True):
        pairs = list(itertools.combinations(range(len(group) + 1), 2))  # index 0: the real crop
        values = M.ms_ssim_pairs([ref, *group], pairs)
        to_real = [v for (i, _), v in zip(pairs, values, strict=True) if i == 0]
        between = [v for (i, _), v in zip(pairs, values, strict=True) if i > 0]
        rows.append({"name": name, "pairwise_ms_ssim": float(np.mean(between)) if between else None,
                     "to_real_ms_ssim": float(np.mean(to_real))})
    pair = [r["pairwise_ms_ssim"] for r in rows if r["pairwise_ms_ssim"] is not None]
    return {
        "pairwise_ms_ssim": float(np.mean(pair)) if pair else None,
        "to_real_ms_ssim": float(np.mean([r["to_real_ms_ssim"] for r in rows])),
        "per_mask": rows,
    }


def class_shares(maps: Images, num_classes: int, names: list[str]) -> dict[str, float]:
    """Share of the pixels of each class over a list of class maps.

    Args:
        maps: class-index maps (H, W).
        num_classes: K.
        names: class names.
    """
    counts = sum(np.bincount(m.ravel().astype(np.int64), minlength=num_classes) for m in maps)
    counts = np.asarray(counts, np.float64)
    return dict(zip(names, (counts / max(counts.sum(), 1.0)).tolist(), strict=True))


def _manipulation(pipeline: Pipeline, judge: Any, masks: Images, consistency: dict[str, Any],
                  relabel: dict[str, str], variants: int, seed: int, classes: Any
                  ) -> dict[str, Any]:
    """Generate from relabelled masks (same seeds) and measure the judge's class shares;
    the shares on the unchanged generated images come from the consistency confusion matrix."""
    if "skipped" in consistency:
        return {"skipped": "no segmenter to measure the class shares"}
    k, names = classes.num_classes, list(classes.names)
    new_masks = [classes.relabel(m, relabel) for m in masks]
    relabelled = generate_variants(pipeline, new_masks, variants, seed)
    after = [judge.segment(im) for group in relabelled for im in group]
    predicted = np.asarray(consistency["generated"]["confusion"]).sum(axis=0)  # per predicted class
    return {
        "mapping": dict(relabel), "segmenter": judge.name,
        "mask_shares": class_shares(masks, k, names),
        "relabelled_mask_shares": class_shares(new_masks, k, names),
        "generated_shares": dict(zip(names, (predicted / predicted.sum()).tolist(), strict=True)),
        "relabelled_generated_shares": class_shares(after, k, names),
    }


def _fid(extractor: M.FeatureExtractor, generated: Images, real: Images, train: Images,
         seed: int) -> dict[str, Any]:
    fg, fr = extractor(generated), extractor(real)
    ft = extractor(train) if train else None
    enough = len(fg) > 1 and len(fr) > 1

    def kid(a: np.ndarray, b: np.ndarray) -> float:
        return M.kernel_inception_distance(a, b, subsets=100, subset_size=1000, seed=seed)

    return {
        "extractor": extractor.name,
        "n_generated": len(fg), "n_real": len(fr), "n_train": len(train),
        "fid": M.frechet_distance(fg, fr) if enough else None,
        "kid": kid(fg, fr) if enough else None,
        "fid_train_vs_real": M.frechet_distance(ft, fr) if enough and len(train) > 1 else None,
        "kid_train_vs_real": kid(ft, fr) if enough and len(train) > 1 else None,
        "note": "few images give biased, noisy FID/KID; compare only under one extractor",
    }


# ---- the evaluation ------------------------------------------------------------------------


def evaluate(
    pipeline: Pipeline,
    dataset: Dataset,
    *,
    holdout: list[str],
    train_names: list[str] | None = None,
    variants: int = 8,
    crop: int | None = 1024,
    seed: int = 0,
    segmenter: Pipeline | None = None,
    relabel: dict[str, str] | None = None,
    extractor: M.FeatureExtractor | None = None,
    judge: Any | None = None,
    two_sample: TwoSampleConfig | None = TwoSampleConfig(),  # noqa: B008 (frozen)
    nuclei: NucleiConfig | None = NucleiConfig(),  # noqa: B008 (frozen)
) -> dict[str, Any]:
    """Evaluate generation and segmentation on held-out tiles (see the module docstring).

    Args:
        pipeline: the model (``generate``, ``segment``, ``classes``, ``name``, ``sha256``).
        dataset: labelled data decoded with the model's class table.
        holdout: names of the held-out tiles (never trained on).
        train_names: real training tiles for the real-vs-real baselines (default: all others).
        variants: generated images per held-out mask.
        crop: side of the centre crops (clipped to the tile); None uses whole tiles.
        seed: seeds the generation (mask i uses ``seed + i * variants``) and the metrics.
        segmenter: the model whose segmenter judges mask consistency and manipulation
            (default: ``pipeline`` itself, i.e. its S_0).
        relabel: class renaming for the manipulation test, e.g. ``{"low_grade": "high_grade"}``.
        extractor: FID/KID features (default: :class:`model.evaluation.metrics.RandomConvExtractor`).
        judge: the independent reference segmenter (``segment``, ``name``, ``sha256``,
            ``classes``; e.g. :class:`model.baselines.judge.Judge`), never ``pipeline``
            itself; None skips ``independent_judge``.
        two_sample: the classifier two-sample test's budget; None skips it.
        nuclei: the nucleus size range; None skips the nuclei statistics.

    Returns:
        A JSON-ready dict (non-finite numbers become None).
    """
    if variants < 1:
        raise ValueError(f"variants must be at least 1, got {variants}")
    _check_classes(dataset, model=pipeline, segmenter=segmenter)
    for name in [*(relabel or {}), *(relabel or {}).values()]:
        dataset.classes.index_of(name)  # ValueError naming the classes
    held, train, real, masks, train_real, train_masks = held_out_crops(dataset, holdout, train_names, crop)
    names = list(dataset.classes.names)
    generated = generate_variants(pipeline, masks, variants, seed)
    flat = [im for group in generated for im in group]
    seg_judge = segmenter if segmenter is not None else pipeline
    seg = _segmentation(pipeline, real, masks, names)
    consistency = _consistency(seg_judge, generated, real, masks, names,
                               seg if seg_judge is pipeline else None)
    report = {
        "model": {"name": pipeline.name, "sha256": pipeline.sha256},
        "setup": {"holdout": [dataset.names[i] for i in held],
                  "train": [dataset.names[i] for i in train], "classes": names,
                  "crop": crop, "crop_shapes": [list(m.shape) for m in masks],
                  "variants": variants, "seed": seed, "data": str(dataset.root)},
        "segmentation": seg,
        "mask_consistency": consistency,
        "realism": swd_section(flat, real, train_real, seed),
        "diversity": diversity_section(generated, real, [dataset.names[i] for i in held]),
        "manipulation": (_manipulation(pipeline, seg_judge, masks, consistency, relabel, variants,
                                       seed, dataset.classes) if relabel else None),
        "fid": _fid(extractor or M.RandomConvExtractor(), flat, real, train_real, seed),
        "two_sample": (two_sample_section(two_sample, flat, real, train_real, seed) if two_sample
                       else {"skipped": "not requested"}),
        "nuclei": (nuclei_section(nuclei, generated, masks, real, train_real, train_masks, names)
                   if nuclei else {"skipped": "not requested"}),
        "detail_colour": compare_detail_colour(flat, real, train_real),
        "independent_judge": _independent(judge, pipeline, generated, real, masks, names),
        "targets": TARGETS,
    }
    return to_jsonable(report)


def to_jsonable(obj: Any) -> Any:
    """Plain-Python copy of a report: numpy scalars to numbers, inf/nan to None.

    Args:
        obj: nested dicts/lists/tuples of numbers, strings, None and numpy values.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---- table -------------------------------------------------------------------------------


def _scores_line(scores: dict[str, Any]) -> str:
    per_class = "  ".join(f"J_{k} {fmt(v)}" for k, v in scores["jaccard"].items())
    return f"mIoU {fmt(scores['miou'])}  OPA {fmt(scores['opa'])}  SMA {fmt(scores['sma'])}  {per_class}"


def _section_lines(r: dict[str, Any]) -> list[str]:
    seg, mc, real, div, fid = (r["segmentation"], r["mask_consistency"], r["realism"],
                               r["diversity"], r["fid"])
    lines = ["segmentation of held-out real crops (S_0):"]
    lines.append("  " + (seg.get("skipped") or _scores_line(seg)))
    if "objects" in seg:
        o = seg["objects"]
        lines.append(f"  object F1 {fmt(o['object_f1'])}  object Dice {fmt(o['object_dice'])}  "
                     f"object Hausdorff {fmt(o['object_hausdorff'], 1)}")
    if "skipped" in mc:
        lines.append(f"mask consistency: {mc['skipped']}")
    else:
        lines += [f"mask consistency (segmenter {mc['segmenter']}):",
                  f"  generated  {_scores_line(mc['generated'])}",
                  f"  real       {_scores_line(mc['real'])}",
                  f"  ratio of mIoU generated/real {fmt(mc['ratio_miou'])}"]
    base = real["swd_train_vs_real"]
    lines.append(f"realism (SWD x1e3, lower is better): generated vs real "
                 f"{fmt(real['swd_generated_vs_real']['mean'], 1)}  train vs real "
                 f"{fmt(base['mean'] if base else None, 1)}  ratio {fmt(real['ratio'], 2)}")
    lines.append(f"diversity (MS-SSIM): between variants {fmt(div['pairwise_ms_ssim'])}  "
                 f"variants to real {fmt(div['to_real_ms_ssim'])}")
    lines.append(f"FID/KID ({fid['extractor']}; {fid['n_generated']} generated, {fid['n_real']} real): "
                 f"FID {fmt(fid['fid'], 2)} (train vs real {fmt(fid['fid_train_vs_real'], 2)})  "
                 f"KID {fmt(fid['kid'], 4)} (train vs real {fmt(fid['kid_train_vs_real'], 4)})")
    return lines


def format_table(report: dict[str, Any]) -> str:
    """A readable summary of an :func:`evaluate` report.

    Args:
        report: the dict :func:`evaluate` returns.
    """
    s = report["setup"]
    lines = [f"model {report['model']['name']} (sha256 {str(report['model']['sha256'])[:12]})",
             f"held out: {', '.join(s['holdout'])}  crop {s['crop']}  variants {s['variants']}  "
             f"seed {s['seed']}", *_section_lines(report), *realism_lines(report)]
    man = report.get("manipulation")
    if man and "skipped" in man:
        lines.append(f"manipulation: {man['skipped']}")
    elif man:
        mapping = ", ".join(f"{a}->{b}" for a, b in man["mapping"].items())
        lines.append(f"manipulation {mapping} (class shares found by {man['segmenter']}):")
        for key in ("mask_shares", "relabelled_mask_shares", "generated_shares",
                    "relabelled_generated_shares"):
            shares = "  ".join(f"{k} {fmt(v)}" for k, v in man[key].items())
            lines.append(f"  {key:<28} {shares}")
    return "\n".join(lines)
