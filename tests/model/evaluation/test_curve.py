"""The learning curve: realism measures of a run's snapshots, equal to evaluate's at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.cli import main
from model.config import PRESETS, TwoSampleConfig, replace
from model.evaluation import evaluate as E
from model.evaluation.curve import learning_curve, markdown, snapshots
from model.pipeline import load_pipeline
from model.training.data import load_dataset
from model.training.train import train
from tests.conftest import write_synthetic_dataset

FAST = TwoSampleConfig(patch=32, steps=20, batch_size=8, width=4, test_stride=32)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 160 px tiles (halves hold a 64 px patch); tile4 is held out."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("curve-data"), count=5, size=160)


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = load_dataset(data_dir, exclude=["tile4"])
    pre = PRESETS["tiny"]
    out = tmp_path_factory.mktemp("curve-run")
    train(replace(pre.model, num_classes=dataset.classes.num_classes),
          replace(pre.train, steps_per_scale=2, snapshot_every=1), dataset, out, name="curve")
    return out


def test_one_row_per_finest_snapshot_and_the_last_equals_evaluate(data_dir: Path, run_dir: Path) -> None:
    dataset = load_dataset(data_dir)
    curve = learning_curve(run_dir, dataset, ["tile4"], variants=2, crop=None, device="cpu", two_sample=FAST)
    assert [r["step"] for r in curve["rows"]] == [0, 1, 2]
    assert set(curve["floors"]) == {"two_sample", "nuclei_density", "nuclei_area", "swd"}
    report = E.evaluate(load_pipeline(run_dir / "model.pt", "cpu"), dataset, holdout=["tile4"], variants=2,
                        crop=None, two_sample=FAST)
    last = curve["rows"][-1]
    assert last["two_sample"] == report["two_sample"]["generated_vs_real"]["accuracy"]
    assert curve["floors"]["two_sample"] == report["two_sample"]["floor_train_vs_real"]["accuracy"]
    assert last["nuclei_density"] == report["nuclei"]["ratio"]["per_megapixel"]
    assert last["swd"] == report["realism"]["swd_generated_vs_real"]["mean"]
    assert last["ms_ssim_variants"] == report["diversity"]["pairwise_ms_ssim"]
    assert curve["rows"][0]["swd"] != last["swd"]  # the snapshots differ
    table = markdown(curve)
    assert "real vs real (floor)" in table and table.count("\n| ") == 4  # the floor, then 3 steps


def test_a_run_without_snapshots_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="snapshot_every"):
        snapshots(tmp_path)


def test_cli_writes_the_curve(data_dir: Path, run_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["experiment", "curve", "--data", str(data_dir), "--holdout", "tile4", "--out", str(tmp_path),
            "--variants", "1", "--crop", "0", "--two-sample-steps", "5", "--device", "cpu"]
    assert main([*base, "--run", str(run_dir)]) == 0
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert [r["step"] for r in curve["rows"]] == [0, 1, 2] and curve["setup"]["holdout"] == ["tile4"]
    assert "| 2 |" in (tmp_path / "curve.md").read_text()
    capsys.readouterr()
    assert main(base) == 2
    assert "--run" in capsys.readouterr().err
    assert main([*base, "--run", str(tmp_path)]) == 2
    assert "snapshot_every" in capsys.readouterr().err
