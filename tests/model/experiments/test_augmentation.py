"""``histosynth experiment augmentation`` at the toy budget: files, pairs, held-out tiles, reuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.cli import main
from model.experiments import augmentation as A
from model.imageio import read_image, read_mask
from model.pipeline import load_pipeline
from model.training.data import TileSampler

MODEL_KEY = "tiny-synthetic@"


def run(data: Path, model: Path, out: Path, log: list[str] | None = None, **kw: object) -> dict:
    sink = log if log is not None else []
    return A.run_augmentation(data, model, out, budget="toy", log=sink.append, **kw)  # type: ignore[arg-type]


def test_end_to_end_writes_both_files(synthetic_dataset_dir: Path, tiny_model_path: Path,
                                      tmp_path: Path) -> None:
    result = run(synthetic_dataset_dir, tiny_model_path, tmp_path)
    rows = {(s["per_mask"], s["mixing"]) for s in result["summary"]}
    assert rows == {(0, "real-only"), (1, "pooled"), (1, "share50"), (1, "pretrain"), (1, "synthetic-only")}
    assert len(result["runs"]) == 2 * 5 and {r["seed"] for r in result["runs"]} == {0, 1}
    assert all(0 <= r["miou"] <= 1 and set(r["jaccard"]) == {"stroma", "benign", "tumour"}
               for r in result["runs"])
    data = json.loads((tmp_path / "augmentation.json").read_text())
    (key, entry), = data["generators"].items()
    assert key.startswith(MODEL_KEY) and entry["setup"]["sha256"] == load_pipeline(tiny_model_path, "cpu").sha256
    assert data["budget"] == "toy" and entry["identity"]["budget_config"]["segmenter"] == "tiny"
    assert entry["summary"][0]["miou"]["n"] == 2 and entry["setup"]["runs_done"] == "10 of 10"
    md = (tmp_path / "augmentation.md").read_text()
    for text in ("| real only | 0 |", "| synthetic only | 1 |", "real + synthetic, 50 % of each batch",
                 "Δ mIoU (paired)", "command: `histosynth", "of the real-only mIoU"):
        assert text in md


def test_pairs_are_those_the_augmentation_job_writes(synthetic_dataset_dir: Path, tiny_model_path: Path,
                                                     tmp_path: Path) -> None:
    from worker.cli import main as worker_main

    run(synthetic_dataset_dir, tiny_model_path, tmp_path, seeds=1, per_mask=(0, 2), mixings=("pooled",))
    (folder,) = (tmp_path / "runs" / "augmentation").glob("toy-*/synthetic/s0-n2")
    masks = tmp_path / "train-masks"
    (masks / "masks").mkdir(parents=True)
    for name in ("tile0", "tile1", "tile2"):  # the training tiles (tile3 is held out)
        shutil.copy(synthetic_dataset_dir / "masks" / f"{name}.png", masks / "masks")
    job = tmp_path / "job"
    assert worker_main(["augment", "--model", str(tiny_model_path), "--masks", str(masks),
                        "--out", str(job), "--seed", "0", "--variants", "2"]) == 0
    written = sorted(p.stem for p in (job / "images").iterdir())
    assert written == json.loads((folder / "done.json").read_text())["pairs"] and len(written) == 6
    pipe = load_pipeline(tiny_model_path, "cpu")
    for stem in written:  # the toy budget does not downscale: the very same pixels
        np.testing.assert_array_equal(read_image(folder / "images" / f"{stem}.png"),
                                      read_image(job / "images" / f"{stem}.png"))
        np.testing.assert_array_equal(read_mask(folder / "masks" / f"{stem}.png"),
                                      pipe.decode_mask(read_mask(job / "masks" / f"{stem}.png")))


def test_held_out_tiles_never_enter_training(synthetic_dataset_dir: Path, tiny_model_path: Path,
                                             tmp_path: Path) -> None:
    result = run(synthetic_dataset_dir, tiny_model_path, tmp_path, holdout=["tile1"], seeds=1,
                 mixings=("share50", "synthetic-only"))
    assert result["identity"]["train"] == ["tile0", "tile2", "tile3"]
    models = sorted((tmp_path / "runs" / "augmentation").glob("toy-*holdout-tile1*/s0-*/model.pt"))
    assert len(models) == 3
    for path in models:
        meta = load_pipeline(path, "cpu").metadata
        assert "tile1" not in meta["dataset"]["names"] and meta["held_out"] == ["tile1"]
        assert not [s for s in meta["synthetic_pairs"] if "tile1" in s]
    synthetic = list((tmp_path / "runs" / "augmentation").glob("toy-*/synthetic/*/images/*.png"))
    assert synthetic and not [p for p in synthetic if "tile1" in p.name]


def test_reruns_reuse_only_identical_runs(synthetic_dataset_dir: Path, tiny_model_path: Path,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = {"seeds": 1, "mixings": ("pooled",)}
    first: list[str] = []
    run(synthetic_dataset_dir, tiny_model_path, tmp_path, first, **one)
    again: list[str] = []
    run(synthetic_dataset_dir, tiny_model_path, tmp_path, again, **one)
    assert sum("reusing" in line for line in again) == 2 and not any("reusing" in s for s in first)
    other_holdout: list[str] = []
    run(synthetic_dataset_dir, tiny_model_path, tmp_path, other_holdout, holdout=["tile0"], **one)
    assert not any("reusing" in line for line in other_holdout)
    other_seeds: list[str] = []
    run(synthetic_dataset_dir, tiny_model_path, tmp_path, other_seeds, seeds=2, mixings=("pooled",))
    assert sum("reusing" in line for line in other_seeds) == 2  # seed 0 as before, seed 1 new
    changed = A.AugmentationBudget("tiny", holdout=1, seeds=1, steps=4, per_mask=(0, 1), mixings=("pooled",))
    monkeypatch.setitem(A.AUGMENTATION_BUDGETS, "toy", changed)  # same name, other budget
    other_budget: list[str] = []
    run(synthetic_dataset_dir, tiny_model_path, tmp_path, other_budget)
    assert not any("reusing" in line for line in other_budget)
    names = {A.run_dir_name(b, "m", "ab" * 32, h, "none", 1.0, {})
             for b in ("toy", "small") for h in (["t1"], ["t2"], ["t1", "t2"])}
    assert len(names) == 6


def _sampler(value: int) -> TileSampler:
    images = [np.full((8, 8, 3), value, np.uint8)]
    return TileSampler(images, [np.full((8, 8), value, np.int64)], 8, 0, 0.0, seed=0)


@pytest.mark.parametrize(("mixing", "expected"), [
    ("share25", [1] * 8), ("share50", [2] * 8), ("synthetic-only", [4] * 8), ("pretrain", [4] * 4 + [0] * 4),
])
def test_mixings_set_the_synthetic_share_of_each_batch(mixing: str, expected: list[int]) -> None:
    sampler = A.MixedSampler(_sampler(0), _sampler(1), A.MIXINGS[mixing].schedule(8, 0.9), seed=0)
    counts = [int(sampler.sample(4)[1].sum() // 64) for _ in range(8)]  # type: ignore[union-attr]
    assert counts == expected


def test_pooled_share_follows_the_pair_counts() -> None:
    sampler = A.MixedSampler(_sampler(0), _sampler(1), A.MIXINGS["pooled"].schedule(400, 0.8), seed=0)
    labels = torch.cat([sampler.sample(4)[1] for _ in range(400)])  # type: ignore[misc]
    assert abs(float(labels.float().mean()) - 0.8) < 0.03


@pytest.mark.parametrize(("extra", "message"), [
    ([], "needs --model"),
    (["--model", "MODEL", "--synthetic-per-mask", "0,-1"], "synthetic pairs per mask"),
    (["--model", "MODEL", "--mixings", "pooled,blend"], "unknown mixings ['blend']"),
    (["--model", "MODEL", "--holdout", "nope"], "not in the dataset"),
])
def test_cli_errors(extra: list[str], message: str, synthetic_dataset_dir: Path, tiny_model_path: Path,
                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = [str(tiny_model_path) if a == "MODEL" else a for a in extra]
    code = main(["experiment", "augmentation", "--budget", "toy", "--data", str(synthetic_dataset_dir),
                 "--out", str(tmp_path), *extra])
    assert code == 2 and message in capsys.readouterr().err


def test_cli_runs_and_prints_the_table(synthetic_dataset_dir: Path, tiny_model_path: Path,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["experiment", "augmentation", "--budget", "toy", "--data", str(synthetic_dataset_dir),
                 "--out", str(tmp_path), "--model", str(tiny_model_path), "--seeds", "1",
                 "--synthetic-per-mask", "0,1", "--mixings", "share25", "--relabel", "benign=tumour",
                 "--threads", "1"])
    assert code == 0
    assert "| real + synthetic, 25 % of each batch | 1 |" in capsys.readouterr().out
    pairs = list((tmp_path / "runs" / "augmentation").glob("toy-*relabel-benign=tumour/synthetic/s0-n1/masks/*"))
    assert pairs and all(1 not in np.unique(np.array(Image.open(p))) for p in pairs)
