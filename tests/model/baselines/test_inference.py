"""Baselines through the one inference path (load_pipeline), the serving file and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.baselines.inference import BaselinePipeline
from model.checkpoint import load_model, read_payload
from model.cli import main
from model.pipeline import PyramidPipeline, load_pipeline
from tests.conftest import synthetic_tile


@pytest.mark.parametrize("arch", ["pix2pix", "pix2pixhd"])
def test_generators_give_identical_variants_at_any_size(
    arch: str, baseline_models: dict[str, Path]
) -> None:
    pipe = load_pipeline(baseline_models[arch], "cpu")
    assert isinstance(pipe, BaselinePipeline) and pipe.arch == arch
    mask = synthetic_tile(7)[1][:37, :61]
    out = pipe.generate(mask, n=3, seed=5)
    assert out.seeds == [5, 6, 7]
    assert all(im.shape == (37, 61, 3) and im.dtype == np.uint8 for im in out.images)
    assert np.array_equal(out.images[0], out.images[2])  # no noise input
    info = pipe.describe()
    assert info["stochastic"] is False and info["can_generate"] and not info["can_segment"]
    with pytest.raises(ValueError, match="no segmenter"):
        pipe.segment(synthetic_tile(7)[0])


@pytest.mark.parametrize("arch", ["fcdensenet", "fcdensenet-pyramid", "mean-teacher"])
def test_segmenters_segment_any_size(arch: str, baseline_models: dict[str, Path]) -> None:
    pipe = load_pipeline(baseline_models[arch], "cpu")
    labels = pipe.segment(synthetic_tile(7)[0][:37, :61])
    assert labels.shape == (37, 61) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 3
    with pytest.raises(ValueError, match="cannot generate"):
        pipe.generate(synthetic_tile(7)[1])
    with pytest.raises(ValueError, match="RGB uint8"):
        pipe.segment(np.zeros((8, 8), np.uint8))


def test_serving_file_has_an_arch_and_load_model_refuses_it(
    baseline_models: dict[str, Path],
) -> None:
    path = baseline_models["pix2pix"]
    payload = read_payload(path)
    assert payload["arch"] == "pix2pix" and payload["segmenter"] == {}
    assert payload["metadata"]["has_segmenter"] is False
    with pytest.raises(ValueError, match="baseline"):
        load_model(path)


def test_ours_still_loads_as_pipeline(tiny_model_path: Path) -> None:
    pipe = load_pipeline(tiny_model_path, "cpu")
    assert type(pipe) is PyramidPipeline
    assert "arch" not in read_payload(tiny_model_path)


def test_cli_trains_a_baseline(
    synthetic_dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--arch",
            "pix2pix",
            "--data",
            str(synthetic_dataset_dir),
            "--out",
            str(out),
            "--steps",
            "1",
            "--half",
            "--set",
            "model.unet.depth=3",
        ]
    )
    assert code == 0
    pipe = load_pipeline(out / "model.pt", "cpu")
    assert pipe.config.unet.depth == 3 and pipe.config.arch == "pix2pix"
    assert (out / "model-fp16.pt").is_file() and (out / "losses.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "fcdensenet", "--mode", "ssl"], "--mode applies to --arch ours only"),
        (["--arch", "fcdensenet", "--preset", "base"], "unknown baseline preset 'base'"),
    ],
)
def test_cli_rejects_ours_only_options(
    argv: list[str],
    message: str,
    synthetic_dataset_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["train", "--data", str(synthetic_dataset_dir), "--out", str(tmp_path), *argv])
    assert code == 2
    assert message in capsys.readouterr().err
