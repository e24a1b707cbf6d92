"""Data-parallel training with 2 gloo processes on the CPU (tiny preset)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import read_payload
from model.cli import main
from model.config import PRESETS, replace
from model.pipeline import load_pipeline
from model.training.data import load_dataset
from model.training.distributed import DistContext, Launch
from model.training.train import train

pytestmark = pytest.mark.timeout(300)
TINY = PRESETS["tiny"]


def test_cli_trains_with_two_processes(synthetic_dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", str(synthetic_dataset_dir), "--preset", "tiny", "--steps", "3",
            "--nproc", "2", "--threads", "1", "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    payload = read_payload(out / "model.pt")
    assert payload["metadata"]["processes"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == TINY.model.num_scales * 3  # rank 0 alone logs
    pipe = load_pipeline(out / "model.pt", "cpu")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 1
    image = pipe.generate(mask, n=1, seed=0).images[0]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and image.std() > 0
    single = tmp_path / "single"
    assert main([*argv[:-4], "--nproc", "1", "--seed", "3", "--out", str(single)]) == 0
    one = read_payload(single / "model.pt")["generator"]
    assert any(not torch.equal(v, one[k]) for k, v in payload["generator"].items()), \
        "rank 1's crops should change the averaged gradients"


def test_resumed_two_process_run_equals_an_uninterrupted_one(synthetic_dataset_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset(synthetic_dataset_dir)
    model_cfg = replace(TINY.model, num_classes=dataset.classes.num_classes)
    train_cfg = replace(TINY.train, steps_per_scale=3, checkpoint_every=2, holdout_steps=1)
    straight = train(model_cfg, train_cfg, dataset, tmp_path / "a", name="a", nproc=2)

    calls = {"n": 0}

    def stop_after_five() -> bool:  # polled by rank 0 before each step: stop mid scale 1
        calls["n"] += 1
        return calls["n"] == 6

    first = train(model_cfg, train_cfg, dataset, tmp_path / "b", name="a", nproc=2, should_stop=stop_after_five)
    assert first.stopped and first.model_path is None
    with pytest.raises(ValueError, match="--nproc 2"):
        train(model_cfg, train_cfg, dataset, tmp_path / "b", name="a", resume=True)
    resumed = train(model_cfg, train_cfg, dataset, tmp_path / "b", name="a", resume=True, nproc=2)
    assert straight.model_path is not None and resumed.model_path is not None
    a, b = read_payload(straight.model_path), read_payload(resumed.model_path)
    for part in ("generator", "segmenter"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resume"


def test_bad_process_counts_are_clear_errors(synthetic_dataset_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--data", str(synthetic_dataset_dir), "--preset", "tiny", "--out", str(tmp_path / "x")]
    assert main([*base, "--nproc", "0"]) == 2
    assert "nproc must be at least 1, got 0" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, "--nproc", "2", "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def _rank_fails(dist_ctx: DistContext) -> None:
    raise RuntimeError("this rank fails on purpose")


def _rank_succeeds(dist_ctx: DistContext) -> None:
    assert dist_ctx.world == 3 and dist_ctx.rank in (1, 2)


def test_a_failed_spawned_rank_is_named(capfd) -> None:
    launch = Launch(2, _rank_fails, {})
    with pytest.raises(RuntimeError, match="histosynth-rank1"):
        launch.join(60)
    assert "this rank fails on purpose" in capfd.readouterr().err  # its traceback is printed


def test_spawned_ranks_that_finish_exit_cleanly() -> None:
    launch = Launch(3, _rank_succeeds, {})
    launch.join(60)
    assert [p.exitcode for p in launch.procs] == [0, 0]
