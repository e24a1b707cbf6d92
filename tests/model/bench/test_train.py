"""``histosynth bench train``: a smoke run of the tiny preset (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.cli import main


def test_bench_train_splits_steps_into_parts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "train", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--threads", "1",
                 "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["scale"] for r in rows if r["part"] == "step"] == [2, 1, 0]  # coarsest first
    for scale in (2, 1, 0):
        parts = {r["part"]: r for r in rows if r["scale"] == scale}
        assert set(parts) == {"batch", "D", "G", "S", "step"}  # joint mode: S updates too
        total = parts["step"]
        assert total["steps_per_s"] > 0 and total["gflop_per_step"] > 0
        split = sum(parts[p]["s_per_step"] for p in ("batch", "D", "G", "S"))
        assert split == pytest.approx(total["s_per_step"])
        assert parts["D"]["gflop_per_step"] > 0 and parts["S"]["gflop_per_step"] > 0
    assert "| scale |" in capsys.readouterr().out


def test_bench_train_generate_mode_has_no_segmenter_part(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "train", "--preset", "tiny", "--mode", "generate", "--steps", "1", "--warmup", "0",
                 "--threads", "1", "--device", "cpu", "--json", str(out)]) == 0
    parts = {r["part"] for r in json.loads(out.read_text())["rows"]}
    assert parts == {"batch", "D", "G", "step"}


def _g_gflop(tmp_path: Path, name: str, *settings: str) -> dict[int, float]:
    out = tmp_path / f"{name}.json"
    sets = [arg for s in settings for arg in ("--set", s)]
    assert main(["bench", "train", "--preset", "tiny", "--mode", "generate", "--steps", "1", "--warmup", "0",
                 "--threads", "1", "--device", "cpu", "--json", str(out), *sets]) == 0
    result = json.loads(out.read_text())
    steps = [r for r in result["rows"] if r["part"] == "step"]
    assert all(r["setup_s"] > 0 for r in steps)  # the once-per-scale setup is timed
    return {r["scale"]: r["gflop_per_step"] for r in result["rows"] if r["part"] == "G"}


def test_bench_train_set_times_the_mask_critic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = _g_gflop(tmp_path, "plain")
    critic = _g_gflop(tmp_path, "critic", "train.loss.mask=1", "train.critic.steps=2")
    assert set(plain) == set(critic) == {2, 1, 0}
    for scale in plain:  # the critic's passes on G's images count in the G part
        assert critic[scale] > plain[scale]
    assert "once per scale, before its first step" in capsys.readouterr().out


def test_bench_train_refuses_a_bad_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "train", "--preset", "tiny", "--steps", "1", "--device", "cpu",
                 "--json", str(tmp_path / "b.json"), "--set", "train.no_such_field=1"])
    assert code == 2
    assert "no_such_field" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_frozen_weights_cost_two_passes_not_three() -> None:
    from torch import nn

    from model.bench.train import _passes

    conv = nn.Conv2d(1, 1, 3)
    x = torch.randn(1, 1, 5, 5, requires_grad=True)
    assert _passes(conv, conv(x)) == 3  # forward, input and weight gradients
    conv.requires_grad_(False)
    assert _passes(conv, conv(x)) == 2  # frozen (the mask critic): no weight gradient
    with torch.no_grad():
        assert _passes(conv, conv(x)) == 1


def test_bench_train_precision_is_recorded_and_counts_the_same_flops(tmp_path: Path) -> None:
    results = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.json"
        assert main(["bench", "train", "--preset", "tiny", "--mode", "generate", "--steps", "1", "--warmup", "0",
                     "--threads", "1", "--device", "cpu", "--precision", precision, "--json", str(out)]) == 0
        results[precision] = json.loads(out.read_text())
    assert [results[p]["precision"] for p in results] == ["float32", "bfloat16"]
    flops = {p: [r["gflop_per_step"] for r in results[p]["rows"]] for p in results}
    assert flops["float32"] == pytest.approx(flops["bfloat16"])
