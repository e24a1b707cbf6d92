"""The command line: train, generate, segment, bench; one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.cli import build_configs, build_parser, main


def test_train_generate_segment(synthetic_dataset_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code = main(["train", "--data", str(synthetic_dataset_dir), "--preset", "tiny", "--steps", "2",
                 "--out", str(run), "--name", "cli-model", "--half"])
    assert code == 0
    assert (run / "model.pt").is_file() and (run / "model-fp16.pt").is_file()
    mask = synthetic_dataset_dir / "masks" / "tile0.png"
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(run / "model.pt"), "--mask", str(mask), "-n", "2",
                 "--seed", "5", "--out", str(out)]) == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == ["tile0_cli-model_seed5.png", "tile0_cli-model_seed6.png"]
    assert Image.open(files[0]).size == Image.open(mask).size
    seg = tmp_path / "seg.png"
    image = synthetic_dataset_dir / "images" / "tile0.png"
    assert main(["segment", "--model", str(run / "model.pt"), "--image", str(image), "--out", str(seg)]) == 0
    assert np.array(Image.open(seg)).shape == (96, 96, 3)


def test_resume_flag_is_required_for_an_existing_run(synthetic_dataset_dir: Path, tmp_path: Path, capsys) -> None:
    args = ["train", "--data", str(synthetic_dataset_dir), "--steps", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("histosynth: error:") and "--resume" in err and err.count("\n") == 1


def test_init_from_a_partial_file_and_partial_files_do_not_serve(
        synthetic_dataset_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["train", "--data", str(synthetic_dataset_dir), "--preset", "tiny", "--steps", "1"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    partial = tmp_path / "a" / "scales" / "scale1.pt"
    small = tmp_path / "scale1-fp16.pt"
    assert main(["package", "--model", str(partial), "--out", str(small)]) == 0
    assert "partly trained: 2 of 3 scales" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "b"), "--init-from", str(small)]) == 0
    config = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[0])
    assert config["scale"] == 0
    mask = synthetic_dataset_dir / "masks" / "tile0.png"
    capsys.readouterr()
    assert main(["generate", "--model", str(partial), "--mask", str(mask), "--out", str(tmp_path)]) == 2
    assert "partly trained (2 of 3 scales)" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "c"), "--init-scales", "1"]) == 2


@pytest.mark.parametrize(
    "argv,message",
    [
        (["generate", "--model", "no-such-model", "--mask", "x.png"], "no model file or bundled model"),
        (["train", "--data", "/nonexistent", "--out", "/tmp/x"], "/nonexistent"),
        (["train", "--data", ".", "--out", "/tmp/x", "--preset", "huge"], None),
    ],
)
def test_errors_are_one_line(argv: list[str], message: str | None, capsys, synthetic_dataset_dir: Path) -> None:
    if "--preset" in argv:
        argv[2] = str(synthetic_dataset_dir)
        message = "unknown preset"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("histosynth: error:") and message in err and "Traceback" not in err


def test_bad_mask_values_name_the_values(tiny_model_path: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(bad)
    assert main(["generate", "--model", str(tiny_model_path), "--mask", str(bad), "--out", str(tmp_path)]) == 2
    assert "[9]" in capsys.readouterr().err


def test_set_overrides_reach_the_configs() -> None:
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--preset", "base", "--scales", "4",
                                      "--set", "model.generator.base_width=16", "--set", "train.lr_g=0.0002",
                                      "--batch-sizes", "4,4,2"])
    model_cfg, train_cfg = build_configs(args, num_classes=4)
    assert model_cfg.num_scales == 4 and model_cfg.generator.base_width == 16 and model_cfg.num_classes == 4
    assert train_cfg.lr_g == 0.0002 and train_cfg.batch_sizes == (4, 4, 2)


def test_precision_flag_reaches_the_training_config(capsys) -> None:
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--precision", "bfloat16"])
    assert build_configs(args, num_classes=2)[1].precision == "bfloat16"
    assert build_configs(build_parser().parse_args(["train", "--data", "d", "--out", "o"]), 2)[1].precision == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--out", "o", "--precision", "half"])
    assert "invalid choice: 'half'" in capsys.readouterr().err


def test_bench_generate_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "generate", "--preset", "tiny", "--size", "64", "--batch", "1,2", "--repeat", "1",
                 "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [(r["size"], r["batch"]) for r in result["rows"]] == [(64, 1), (64, 2)]
    row = result["rows"][0]
    assert row["s_per_image"] > 0 and row["gflop_per_image"] > 0 and row["conv_gflops"] > 0
    assert "| size |" in capsys.readouterr().out


def test_transductive_ssl_uses_held_out_images(synthetic_dataset_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["train", "--data", str(synthetic_dataset_dir), "--mode", "ssl", "--transductive", "--steps", "1"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "--exclude" in capsys.readouterr().err
    assert main([*base, "--exclude", "tile3", "--out", str(tmp_path / "b")]) == 0
    meta = json.loads((tmp_path / "b" / "config.json").read_text())
    assert meta["train"]["transductive"] is True and meta["metadata"]["held_out"] == ["tile3"]
