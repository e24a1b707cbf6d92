"""The realism sections of the :func:`model.evaluation.evaluate.evaluate` report: the
classifier two-sample test and the nuclei statistics (see :mod:`model.evaluation.realism`),
each beside its real-vs-real floor, the targets of issue 10 and their summary lines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model.config import NucleiConfig, TwoSampleConfig
from model.evaluation.realism import compare_nuclei, two_sample_by_blur, two_sample_test

Images = list[np.ndarray]

#: Issue 10's targets on the held-out crops (reported beside the numbers).
TARGETS = {"two_sample_accuracy_max": 0.75, "nuclei_ratio_range": [0.7, 1.3],
           "independent_judge_ratio_min": 0.9, "ms_ssim_between_variants": [0.3, 0.85]}


def two_sample_section(cfg: TwoSampleConfig, flat: Images, real: Images, train: Images, seed: int
                       ) -> dict[str, Any]:
    """Real held-out crops (first set) against generated ones, and against training crops.

    Args:
        cfg: the classifier's budget.
        flat: every generated image.
        real: the real held-out crops.
        train: the real training crops (the floor).
        seed: seeds patches and networks.
    """
    small = min(min(im.shape[0], im.shape[1] // 2) for im in [*flat, *real, *train])
    if small < cfg.patch:
        return {"skipped": f"crops too small: each half must hold a {cfg.patch} px patch"}
    floor = two_sample_test(real, train, cfg, seed) if train else None
    section: dict[str, Any] = {
        "generated_vs_real": two_sample_test(real, flat, cfg, seed),
        "floor_train_vs_real": floor,
        "note": "accuracy 0.5 = indistinguishable; below the floor is better than real",
    }
    if cfg.blur_sigmas:
        section["by_blur"] = two_sample_by_blur(real, flat, train or None, cfg, seed)
    return section


def nuclei_section(cfg: NucleiConfig, generated: list[Images], masks: Images, real: Images,
                   train: Images, train_masks: Images, names: list[str]) -> dict[str, Any]:
    """Nuclei of the generated images (grouped per mask) against the real held-out crops,
    beside the real training crops (the floor)."""
    gen_masks = [m for m, group in zip(masks, generated, strict=True) for _ in group]
    flat = [im for group in generated for im in group]
    return compare_nuclei(flat, gen_masks, real, masks, train, train_masks, names, cfg)


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, "-" for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio_pair(r: dict[str, Any] | None) -> str:
    return "-" if r is None else f"{fmt(r['per_megapixel'], 2)} / {fmt(r['mean_area'], 2)}"


def realism_lines(r: dict[str, Any]) -> list[str]:
    """Summary lines of the two-sample test, nuclei and the independent judge, each beside its
    real-vs-real floor.

    Args:
        r: an :func:`model.evaluation.evaluate.evaluate` report.
    """
    ts, nuc, ij, t = r["two_sample"], r["nuclei"], r["independent_judge"], r["targets"]
    lines = []
    if "skipped" in ts:
        lines.append(f"two-sample classifier: {ts['skipped']}")
    else:
        floor = ts["floor_train_vs_real"]
        lines.append(f"two-sample classifier accuracy (0.5 = indistinguishable; target <= "
                     f"{t['two_sample_accuracy_max']}): generated vs real "
                     f"{fmt(ts['generated_vs_real']['accuracy'])}  floor train vs real "
                     f"{fmt(floor['accuracy'] if floor else None)}")
        for row in ts.get("by_blur", []):
            each = row.get("accuracies") or []
            spread = f" (classifiers {', '.join(fmt(v) for v in each)})" if len(each) > 1 else ""
            lines.append(f"  after a Gaussian blur of sigma {row['sigma']:g} px: generated vs real "
                         f"{fmt(row['accuracy'])}{spread}  floor {fmt(row['floor'])}")
    if "skipped" in nuc:
        lines.append(f"nuclei: {nuc['skipped']}")
    else:
        lo, hi = t["nuclei_ratio_range"]
        lines.append(f"nuclei (haematoxylin > {nuc['threshold']:.3f}, objects "
                     f"{nuc['area_range_px'][0]}-{nuc['area_range_px'][1]} px; per MP / mean area): "
                     f"real {fmt(nuc['real']['per_megapixel'], 0)} / {fmt(nuc['real']['mean_area'], 1)}"
                     f"  generated {fmt(nuc['generated']['per_megapixel'], 0)} / "
                     f"{fmt(nuc['generated']['mean_area'], 1)}")
        floor = nuc["ratio_reference_vs_real"]
        lines.append(f"  ratio generated/real {_ratio_pair(nuc['ratio'])}  floor train/real "
                     f"{_ratio_pair(floor)}  (target {lo}-{hi})")
        for name, ratio in nuc["ratio"]["per_class"].items():
            other = floor["per_class"][name] if floor else None
            lines.append(f"  {name:<12} {_ratio_pair(ratio)}  floor {_ratio_pair(other)}")
    for row in r.get("detail_colour", {}).get("by_pool", []):
        ref = row["reference"]
        lines.append(f"fine detail ({row['pool']} px) off its first colour axis: generated "
                     f"{fmt(row['generated']['off_axis'])}  real {fmt(row['real']['off_axis'])}  floor train "
                     f"{fmt(ref['off_axis'] if ref else None)}; detail variance generated/real "
                     f"{fmt(row['variance_ratio'], 2)}  floor {fmt(row['reference_variance_ratio'], 2)}")
    if "skipped" in ij:
        lines.append(f"independent judge: {ij['skipped']}")
    else:
        lines.append(f"independent judge {ij['segmenter']} (real training tiles only): mIoU "
                     f"generated {fmt(ij['generated']['miou'])} / real {fmt(ij['real']['miou'])} = "
                     f"{fmt(ij['ratio_miou'], 2)} (target >= {t['independent_judge_ratio_min']}; "
                     f"real/real = 1 by construction)")
    return lines
