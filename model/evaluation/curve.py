"""The learning curve of a run: realism measures of its snapshots against training steps.

``histosynth train --set train.snapshot_every=K`` writes ``RUN/snapshots/scale{n}-step{k}.pt``
before a scale's first step and after every K of its steps. :func:`learning_curve` evaluates
every snapshot of the finest scale (a full serving file) on held-out centre crops with the
measures of ``histosynth evaluate`` that need no weights and no judge: the classifier
two-sample accuracy, the nuclei density and mean-area ratios, SWD and MS-SSIM between
variants; their real-vs-real floors (real training crops against the held-out ones) are
computed once and reported beside them. Same seeds as ``evaluate``: the last row of a run
whose last snapshot is the shipped file equals ``evaluate``'s numbers for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.config import NucleiConfig, TwoSampleConfig
from model.evaluation.evaluate import (
    diversity_section,
    generate_variants,
    held_out_crops,
    swd_section,
    to_jsonable,
)
from model.evaluation.realism import two_sample_test
from model.evaluation.realism_report import fmt, nuclei_section
from model.pipeline import load_pipeline
from model.training.data import Dataset

_NAME = re.compile(r"scale0-step(\d+)\.pt")


def snapshots(run: str | Path) -> list[tuple[int, Path]]:
    """(step, file) of the run's finest-scale snapshots, by step; an error naming the run
    when it has none."""
    folder = Path(run) / "snapshots"
    found = sorted((int(m.group(1)), f) for f in folder.glob("scale0-step*.pt") if (m := _NAME.fullmatch(f.name)))
    if not found:
        raise ValueError(f"{run} has no finest-scale snapshots ({folder}/scale0-step<k>.pt); "
                         "train it with --set train.snapshot_every=K")
    return found


def learning_curve(run: str | Path, dataset: Dataset, holdout: list[str], *, variants: int = 8,
                   crop: int | None = 1024, seed: int = 0, device: str = "auto",
                   two_sample: TwoSampleConfig = TwoSampleConfig(),  # noqa: B008 (frozen)
                   nuclei: NucleiConfig = NucleiConfig(),  # noqa: B008 (frozen)
                   on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Evaluate every finest-scale snapshot of ``run`` on the held-out tiles of ``dataset``.

    Args:
        run: a run directory trained with ``snapshot_every`` > 0.
        dataset: labelled data with the model's class table.
        holdout: names of the held-out tiles (the run must not have trained on them).
        variants, crop, seed: as for ``histosynth evaluate``.
        device: where the snapshots generate.
        two_sample, nuclei: the measures' settings.
        on_row: called with each row as it is measured (progress).

    Returns:
        A JSON-ready dict: ``setup``, ``floors`` and one row per snapshot.
    """
    files = snapshots(run)
    held, train, real, masks, train_real, train_masks = held_out_crops(dataset, holdout, None, crop)
    names = list(dataset.classes.names)
    floors: dict[str, Any] = {"two_sample": two_sample_test(real, train_real, two_sample, seed)["accuracy"]}
    rows: list[dict[str, Any]] = []
    for step, path in files:
        pipe = load_pipeline(path, device)
        if list(pipe.classes.names) != names:
            raise ValueError(f"{path} has classes {pipe.classes.names}, the data {names}")
        generated = generate_variants(pipe, masks, variants, seed)
        flat = [im for group in generated for im in group]
        nuc = nuclei_section(nuclei, generated, masks, real, train_real, train_masks, names)
        swd = swd_section(flat, real, train_real, seed)
        if not rows:  # the same for every snapshot (real crops only)
            floors.update(nuclei_density=nuc["ratio_reference_vs_real"]["per_megapixel"],
                          nuclei_area=nuc["ratio_reference_vs_real"]["mean_area"],
                          swd=swd["swd_train_vs_real"]["mean"] if swd["swd_train_vs_real"] else None)
        row = {"step": step, "file": str(path),
               "two_sample": two_sample_test(real, flat, two_sample, seed)["accuracy"],
               "nuclei_density": nuc["ratio"]["per_megapixel"], "nuclei_area": nuc["ratio"]["mean_area"],
               "swd": swd["swd_generated_vs_real"]["mean"],
               "ms_ssim_variants": diversity_section(generated, real, [dataset.names[i] for i in held])["pairwise_ms_ssim"]}
        rows.append(row)
        if on_row is not None:
            on_row(row)
    setup = {"run": str(run), "holdout": [dataset.names[i] for i in held], "train": [dataset.names[i] for i in train],
             "variants": variants, "crop": crop, "seed": seed, "two_sample_steps": two_sample.steps, "two_sample_repeats": two_sample.repeats,
             "data": str(dataset.root)}
    return to_jsonable({"setup": setup, "floors": floors, "rows": rows})


def markdown(curve: dict[str, Any]) -> str:
    """The curve as a Markdown table, the real-vs-real floors in its first row."""
    f = curve["floors"]
    lines = ["| step | two-sample accuracy | nuclei density ratio | nuclei area ratio | SWD x 1e3 | MS-SSIM variants |",
             "|---:|---:|---:|---:|---:|---:|",
             f"| real vs real (floor) | {fmt(f['two_sample'], 2)} | {fmt(f.get('nuclei_density'), 2)} | "
             f"{fmt(f.get('nuclei_area'), 2)} | {fmt(f.get('swd'), 1)} | - |"]
    for r in curve["rows"]:
        lines.append(f"| {r['step']} | {fmt(r['two_sample'], 2)} | {fmt(r['nuclei_density'], 2)} | "
                     f"{fmt(r['nuclei_area'], 2)} | {fmt(r['swd'], 1)} | {fmt(r['ms_ssim_variants'], 3)} |")
    s = curve["setup"]
    lines.append("")
    crops = f"centre {s['crop']} crops" if s["crop"] else "whole tiles"
    lines.append(f"{s['run']}: held-out {', '.join(s['holdout'])}, {crops}, "
                 f"{s['variants']} variants, seed {s['seed']}; targets: two-sample <= 0.75, "
                 "nuclei ratios 0.7-1.3, MS-SSIM between variants 0.3-0.85")
    return "\n".join(lines)
