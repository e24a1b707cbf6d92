"""Summary, Markdown and the results files of ``histosynth experiment augmentation``.

``OUT/augmentation.json`` holds one entry per generator (name and digest), so the shipped
models and their retrained successors sit side by side; each run replaces its own entry and
rewrites ``OUT/augmentation.md`` from all of them.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

from model.evaluation.evaluate import to_jsonable
from model.experiments.tables import _f, _mean_std, _spread

SCORES = ("miou", "opa", "sma")


def _rows_of(runs: list[dict[str, Any]]) -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []
    for r in runs:
        if (r["per_mask"], r["mixing"]) not in seen:
            seen.append((r["per_mask"], r["mixing"]))
    return seen


def summarise(runs: list[dict[str, Any]], classes: list[str]) -> list[dict[str, Any]]:
    """Mean and sample std over seeds per (amount, mixing), and the paired mIoU change
    against real pairs only (same seed)."""
    real = {r["seed"]: r["miou"] for r in runs if r["per_mask"] == 0}
    out = []
    for per_mask, mixing in _rows_of(runs):
        rows = [r for r in runs if (r["per_mask"], r["mixing"]) == (per_mask, mixing)]
        deltas = [r["miou"] - real[r["seed"]] for r in rows if r["seed"] in real and per_mask]
        out.append({
            "per_mask": per_mask, "mixing": mixing, "seeds": [r["seed"] for r in rows],
            **{k: _spread([r[k] for r in rows]) for k in SCORES},
            "jaccard": {c: _spread([r["jaccard"][c] for r in rows]) for c in classes},
            "delta_miou": _spread(deltas) if deltas else None,
        })
    return out


def headline(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """Best mixing with real pairs against real pairs only, and synthetic only against it."""
    real = next((s for s in summary if s["per_mask"] == 0), None)
    mixed = [s for s in summary if s["per_mask"] and s["mixing"] != "synthetic-only"]
    only = [s for s in summary if s["mixing"] == "synthetic-only"]
    out: dict[str, Any] = {"real_only_miou": real["miou"] if real else None}
    if real and mixed:
        best = max(mixed, key=lambda s: s["miou"]["mean"])
        spread = max(v for v in (real["miou"]["std"], best["miou"]["std"], 0.0) if v is not None)
        gain = best["miou"]["mean"] - real["miou"]["mean"]
        out.update(best={"per_mask": best["per_mask"], "mixing": best["mixing"],
                         "miou": best["miou"], "delta_miou": best["delta_miou"]},
                   gain=gain, spread=spread, beats_real_by_more_than_spread=bool(
                       gain > spread and best["miou"]["n"] > 1))
    if real and only and real["miou"]["mean"]:
        top = max(only, key=lambda s: s["miou"]["mean"])
        out["synthetic_only"] = {"per_mask": top["per_mask"], "miou": top["miou"],
                                 "ratio_to_real": top["miou"]["mean"] / real["miou"]["mean"]}
    return out


def result(identity: dict[str, Any], setup: dict[str, Any], runs: list[dict[str, Any]],
           wall_s: float) -> dict[str, Any]:
    """The JSON entry of one generator: setup, every run's scores, the summary and headline."""
    summary = summarise(runs, identity["classes"])
    return to_jsonable({"identity": identity, "setup": setup, "runs": runs, "summary": summary,
                        "headline": headline(summary), "wall_time_s": wall_s})


def _table(entry: dict[str, Any]) -> list[str]:
    classes, mixings = entry["identity"]["classes"], entry["setup"]["mixings"]
    cols = ["synthetic / mask", "mIoU", "Δ mIoU (paired)", *[f"J_{c}" for c in classes], "OPA", "SMA"]
    lines = ["| training data | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for s in entry["summary"]:
        label = "real only" if not s["per_mask"] else mixings.get(s["mixing"], s["mixing"])
        delta = "-" if s["delta_miou"] is None else _mean_std(s["delta_miou"])
        cells = [str(s["per_mask"]), _mean_std(s["miou"]), delta,
                 *[_mean_std(s["jaccard"][c]) for c in classes], _mean_std(s["opa"]), _mean_std(s["sma"])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _reading(h: dict[str, Any]) -> list[str]:
    lines = []
    if "best" in h:
        b = h["best"]
        verdict = "beats" if h["beats_real_by_more_than_spread"] else "does not beat"
        lines.append(f"Best mixing with real pairs: {b['mixing']} at {b['per_mask']} per mask, "
                     f"mIoU {_mean_std(b['miou'])} against {_mean_std(h['real_only_miou'])} with "
                     f"real pairs only: {h['gain']:+.3f}, which {verdict} real pairs only by more "
                     f"than the spread over seeds ({_f(h['spread'])}).")
    if "synthetic_only" in h:
        s = h["synthetic_only"]
        lines.append(f"Synthetic pairs only ({s['per_mask']} per mask) reach "
                     f"{s['ratio_to_real']:.2f} of the real-only mIoU (target: 0.7).")
    return lines


def section(entry: dict[str, Any]) -> list[str]:
    """The Markdown section of one generator."""
    s, i = entry["setup"], entry["identity"]
    return [
        f"## {s['model']} (sha256 {s['sha256'][:16]}…)",
        "",
        f"- generator: `{s['model_file']}`; data: `{s['data']}`; classes: {', '.join(i['classes'])}",
        f"- held out: {', '.join(i['holdout'])}; trained on: {', '.join(i['train'])}; "
        f"tiles after the budget's downscale: {s['image_shapes'][0]}",
        f"- segmenter: m-FC-DenseNet, preset `{i['budget_config']['segmenter']}`; seeds: "
        f"{s['seeds']}; synthetic pairs: transforms {i['transforms']}, noise {i['noise']}"
        + (f", relabel {i['relabel']}" if i["relabel"] else ""),
        f"- command: `{s['command']}`; wall time {entry['wall_time_s'] / 60:.1f} min; "
        f"runs done: {s['runs_done']}",
        "",
        *_table(entry),
        "",
        "Mean ± sample std over seeds; Δ mIoU: the change against real pairs only with the "
        "same seed. " + " ".join(_reading(entry["headline"])),
        "",
    ]


def markdown(results: dict[str, Any]) -> str:
    """The whole ``augmentation.md``: one section per generator."""
    lines = [f"# Experiment: augmentation (budget {results['budget']})", "",
             "Does a segmenter trained with a generator's synthetic pairs do better on held-out "
             "tiles? See `histosynth experiment augmentation --help`.", ""]
    for entry in results["generators"].values():
        lines += section(entry)
    return "\n".join(lines)


def write(out: Path, entry: dict[str, Any]) -> tuple[Path, Path]:
    """Add or replace ``entry`` in ``OUT/augmentation.json`` and rewrite the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "augmentation.json", out / "augmentation.md"
    with open(out / ".augmentation.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # generators run side by side into one OUT
        results = json.loads(js.read_text()) if js.is_file() else {}
        budget = entry["identity"]["budget"]
        if results.get("budget") != budget:
            results = {"experiment": "augmentation", "budget": budget, "generators": {}}
        results["generators"][f"{entry['setup']['model']}@{entry['setup']['sha256'][:12]}"] = entry
        js.write_text(json.dumps(results, indent=2))
        md.write_text(markdown(results))
    return md, js
