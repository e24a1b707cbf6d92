"""``histosynth experiment`` end to end at the toy budget, its helpers, and multi-arch bench."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from model.cli import main
from model.evaluation import metrics
from model.experiments import crop_tiles, default_holdout, downscale, run_experiment
from model.experiments.setup import make_setup
from model.training.data import load_dataset


class MeanColour:
    """A cheap 6-dim FID feature extractor for tests (the real ones cost seconds)."""

    name = "mean-colour"

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray([np.r_[im.mean((0, 1)), im.std((0, 1))] for im in images], np.float64)


def test_ssl_end_to_end_writes_tables(synthetic_dataset_dir: Path, tmp_path: Path) -> None:
    result = run_experiment(
        "ssl", synthetic_dataset_dir, tmp_path, budget="toy", log=lambda s: None
    )
    md = (tmp_path / "ssl.md").read_text()
    assert "| consistency-based (mean teacher, transductive) |" in md and "| 40% | 80% |" in md
    assert "Paper (Table 8" in md
    data = json.loads((tmp_path / "ssl.json").read_text())
    assert data["setup"]["holdout"] == ["tile3"] and data["setup"]["seeds"] == 1
    assert len(data["runs"]) == 2 * 6  # fractions x methods
    for per in result["summary"]["methods"].values():
        assert set(per) == {"0.4", "0.8"}
        assert all(0 <= per[f]["miou"]["mean"] <= 1 for f in per)
    # a second run reuses every finished model (no retraining) and gives the same numbers
    again = run_experiment("ssl", synthetic_dataset_dir, tmp_path, budget="toy", log=lambda s: None)
    assert [r["miou"] for r in again["runs"]] == [r["miou"] for r in result["runs"]]


def test_supervised_end_to_end(synthetic_dataset_dir: Path, tmp_path: Path) -> None:
    run_experiment(
        "supervised",
        synthetic_dataset_dir,
        tmp_path,
        budget="toy",
        holdout=["tile0"],
        log=lambda s: None,
    )
    md = (tmp_path / "supervised.md").read_text()
    for row in ("| m-FC-DenseNet |", "| m-FC-DenseNet + pyramid |", "| ours |"):
        assert row in md
    assert "J_stroma" in md and "mIoU" in md and "Table 3" in md
    data = json.loads((tmp_path / "supervised.json").read_text())
    assert data["setup"]["holdout"] == ["tile0"] and len(data["rows"]) == 3


def test_generation_end_to_end(
    synthetic_dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "make_extractor", lambda path: MeanColour())
    result = run_experiment(
        "generation", synthetic_dataset_dir, tmp_path, budget="toy", log=lambda s: None
    )
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"pix2pix", "pix2pixHD", "ours"}
    assert rows["pix2pix"]["ms_ssim_variants"] == pytest.approx(1.0)  # identical variants
    assert rows["ours"]["ms_ssim_variants"] < 1.0
    assert all(r["swd"] is not None and r["fid"] is not None for r in rows.values())
    assert all(0 <= r["two_sample_accuracy"] <= 1 for r in rows.values())
    assert result["reference"]["two_sample_accuracy"] is not None
    assert rows["ours"]["report"]["nuclei"]["area_range_px"] == [30, 800]  # toy: no downscale
    md = (tmp_path / "generation.md").read_text()
    assert "| real training crops |" in md and "mean-colour" in md and "2-sample acc." in md


def test_run_folder_names_budget_and_holdout(synthetic_dataset_dir: Path, tmp_path: Path) -> None:
    def runs_dir(budget: str, holdout: list[str] | None) -> Path:
        return make_setup("ssl", synthetic_dataset_dir, tmp_path, budget, holdout, None, None,
                          "folder", "cpu", None, lambda s: None).runs_dir

    toy = runs_dir("toy", ["tile0"])
    assert toy == runs_dir("toy", ["tile0"]) and toy.is_relative_to(tmp_path / "runs" / "ssl")
    assert toy.name.startswith("toy-holdout1-")
    assert runs_dir("toy", ["tile1"]) != toy
    assert runs_dir("toy", ["tile0", "tile1"]) != toy
    assert runs_dir("small", ["tile0"]) != toy


def test_helpers(synthetic_dataset_dir: Path) -> None:
    ds = load_dataset(synthetic_dataset_dir)
    small = downscale(ds, 2)
    assert small.images[0].shape == (48, 48, 3) and small.masks[0].shape == (48, 48)
    crops = crop_tiles(small, 32)
    assert len(crops) == 4 * 4 and crops.names[0] == "tile0@0,0"
    assert all(im.shape == (32, 32, 3) for im in crops.images)
    assert default_holdout(["b", "a", "c"], 2) == ["b", "c"]
    with pytest.raises(ValueError, match="hold out"):
        default_holdout(["a"], 1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["experiment", "ssl", "--budget", "toy", "--holdout", "nope"], "not in the dataset"),
    ],
)
def test_cli_errors(
    argv: list[str],
    message: str,
    synthetic_dataset_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main([*argv, "--data", str(synthetic_dataset_dir), "--out", str(tmp_path)])
    assert code == 2 and message in capsys.readouterr().err


def test_bench_two_archs_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "generate",
            "--arch",
            "ours,pix2pix",
            "--size",
            "32",
            "--batch",
            "1",
            "--preset",
            "tiny",
            "--baseline-preset",
            "tiny",
            "--repeat",
            "1",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    rows = {r["arch"]: r for r in data["rows"]}
    assert set(rows) == {"ours", "pix2pix"} and rows["ours"]["ratio_to_ours"] == 1.0
    assert rows["pix2pix"]["ratio_to_ours"] > 0 and rows["pix2pix"]["gflop_per_image"] > 0
    assert "| pix2pix | fp32 | 32 | 1 |" in capsys.readouterr().out


def test_bench_rejects_a_segmenter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bench",
            "generate",
            "--arch",
            "ours,fcdensenet",
            "--size",
            "32",
            "--preset",
            "tiny",
            "--device",
            "cpu",
            "--json",
            str(tmp_path / "b.json"),
        ]
    )
    assert code == 2 and "cannot generate" in capsys.readouterr().err
