"""``histosynth evaluate``: arguments, the judge option, the report file and its digest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from model.checkpoint import file_sha256, weights_sha256
from model.classes import ClassTable
from model.cli import evaluate as CE
from model.cli import main
from tests.conftest import SYNTH_CLASSES
from tests.model.evaluation.test_evaluate import FakePipeline, _dataset


@pytest.fixture(scope="module")
def classes() -> ClassTable:
    return ClassTable.from_dict(SYNTH_CLASSES)


def test_cli(classes: ClassTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> None:
    loaded: list[str] = []

    def load_pipeline(name: str, device: str) -> FakePipeline:
        loaded.append(name)
        return FakePipeline(classes, name=name)

    monkeypatch.setattr(CE, "_load_pipeline", load_pipeline)
    monkeypatch.setattr(CE, "_load_dataset", lambda root, table, layout: _dataset(table, size=32))
    parser = argparse.ArgumentParser()
    CE.register(parser.add_subparsers())
    out = tmp_path / "results.json"
    args = parser.parse_args(["evaluate", "--model", "m.pt", "--data", "d", "--holdout", "t0,t1",
                              "--variants", "2", "--crop", "0", "--segmenter", "s.pt",
                              "--relabel", "benign=tumour", "--judge", "none",
                              "--two-sample-steps", "0", "--out", str(out)])
    assert args.func(args) == 0
    assert loaded == ["m.pt", "s.pt"]
    report = json.loads(out.read_text())
    assert report["setup"]["crop"] is None and report["manipulation"]["mapping"] == {"benign": "tumour"}
    table = capsys.readouterr().out
    assert "mask consistency (segmenter s.pt)" in table and "randconv-v1" in table
    assert "benign->tumour" in table
    assert "independent judge: no independent judge" in table and "nuclei (haematoxylin" in table
    assert report["two_sample"] == {"skipped": "not requested"}


def test_evaluate_a_real_tiny_model(tiny_model_path, synthetic_dataset_dir, tmp_path) -> None:
    """End to end through the CLI with a trained (tiny) model: every section is computed."""
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--model", str(tiny_model_path), "--data", str(synthetic_dataset_dir),
                 "--holdout", "tile3", "--variants", "2", "--crop", "0", "--relabel", "benign=tumour",
                 "--judge-cache", str(tmp_path / "judges"), "--judge-steps", "3",
                 "--two-sample-steps", "5", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    for section in ("segmentation", "mask_consistency", "realism", "diversity", "manipulation",
                    "nuclei", "independent_judge"):
        assert section in report and "skipped" not in report[section], section
    assert "too small" in report["two_sample"]["skipped"]  # 96 px tiles: halves under 64 px
    assert report["model"]["sha256"] == file_sha256(tiny_model_path)
    assert report["model"]["file"] == str(tiny_model_path)
    assert report["model"]["weights_sha256"] == weights_sha256(tiny_model_path)
    judge = report["independent_judge"]["judge"]
    assert judge["arch"] == "fcdensenet" and judge["sha256"] != report["model"]["sha256"]
    assert judge["trained_on"] == ["tile0", "tile1", "tile2"] and judge["held_out"] == ["tile3"]


@pytest.mark.parametrize("value", ["x", "0", "2,-1", "nan", ","])
def test_two_sample_blur_rejects_bad_sigmas(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", "m.pt", "--data", "d", "--holdout", "t0",
              "--two-sample-blur", value])
    assert exc.value.code == 2
    assert "--two-sample-blur" in capsys.readouterr().err


def test_two_sample_blur_config_and_report_lines() -> None:
    from model.evaluation.realism_report import realism_lines

    cfg = CE._two_sample_config(None, 1, (2.0, 8.0))
    assert cfg is not None and cfg.blur_sigmas == (2.0, 8.0) and cfg.repeats == 1
    assert CE._two_sample_config(50, 1, (4.0,)).steps == 50  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="--two-sample-blur needs"):
        CE._two_sample_config(0, 1, (4.0,))
    report = {"two_sample": {"generated_vs_real": {"accuracy": 1.0}, "floor_train_vs_real": {"accuracy": 0.6},
                             "by_blur": [{"sigma": 4.0, "accuracy": 0.99, "floor": 0.58},
                                         {"sigma": 8.0, "accuracy": 0.8, "floor": None,
                                          "accuracies": [0.9, 0.8, 0.7], "floor_accuracies": None}]},
              "nuclei": {"skipped": "not requested"}, "independent_judge": {"skipped": "none"},
              "targets": {"two_sample_accuracy_max": 0.75}}
    lines = realism_lines(report)
    assert "  after a Gaussian blur of sigma 4 px: generated vs real 0.990  floor 0.580" in lines
    assert ("  after a Gaussian blur of sigma 8 px: generated vs real 0.800 (classifiers 0.900, 0.800, 0.700)"
            "  floor -") in lines
