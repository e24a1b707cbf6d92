"""Serving files: round trip, half precision, clear errors for foreign files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import file_sha256, load_model, read_payload, save_model, weights_sha256
from model.pipeline import load_pipeline


def test_round_trip_rebuilds_identical_networks(tiny_model_path: Path, tmp_path: Path) -> None:
    m = load_model(tiny_model_path)
    copy = save_model(tmp_path / "copy.pt", m.generator, m.segmenter, m.config, m.classes, m.metadata)
    again = load_model(copy)
    assert again.config == m.config and again.classes == m.classes
    for a, b in zip(m.generator.state_dict().values(), again.generator.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    mask = np.zeros((48, 48), np.int64)
    mask[8:30, 8:30] = 1
    out_a = load_pipeline(tiny_model_path, "cpu").generate(mask, 2, seed=4).images
    out_b = load_pipeline(copy, "cpu").generate(mask, 2, seed=4).images
    assert all(np.array_equal(x, y) for x, y in zip(out_a, out_b, strict=True))


def test_half_precision_is_smaller_and_close(tiny_model_path: Path, tmp_path: Path) -> None:
    m = load_model(tiny_model_path)
    half = save_model(tmp_path / "half.pt", m.generator, m.segmenter, m.config, m.classes, m.metadata, half=True)
    assert half.stat().st_size < tiny_model_path.stat().st_size
    payload = read_payload(half)
    assert payload["generator"]["scales.0.phi.0.0.weight"].dtype == torch.float16
    mask = np.zeros((48, 48), np.int64)
    a = load_pipeline(tiny_model_path, "cpu").generate(mask, 1, seed=1).images[0].astype(int)
    b = load_pipeline(half, "cpu").generate(mask, 1, seed=1).images[0].astype(int)
    assert np.abs(a - b).mean() < 2.0


def test_metadata_is_plain_json(tiny_model_path: Path) -> None:
    meta = read_payload(tiny_model_path)["metadata"]
    assert meta["name"] == "tiny-synthetic" and isinstance(meta["torch"], str)
    assert meta["dataset"]["names"] and meta["perceptual"].startswith("off")


@pytest.mark.parametrize(
    "content,message",
    [(b"not a torch file", "not a readable"), (None, "not a HistoSynth model")],
)
def test_foreign_files_are_rejected(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "x.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_model(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model(tmp_path / "nope.pt")


def test_sha256_is_stable(tiny_model_path: Path) -> None:
    assert file_sha256(tiny_model_path) == file_sha256(tiny_model_path)


def test_package_stores_evaluation_and_provenance(tiny_model_path: Path, tmp_path: Path, capsys) -> None:
    import json

    from model.cli import main

    report = tmp_path / "eval.json"
    report.write_text(json.dumps({"realism": {"ratio": 1.2}}))
    out = tmp_path / "models" / "demo.pt"
    assert main(["package", "--model", str(tiny_model_path), "--out", str(out), "--name", "demo",
                 "--evaluation", str(report), "--provenance", "made in a test"]) == 0
    meta = read_payload(out)["metadata"]
    assert meta["name"] == "demo" and meta["weights"] == "float16"
    assert meta["evaluation"] == {"realism": {"ratio": 1.2}} and meta["data_provenance"] == "made in a test"
    assert meta["source_sha256"] == file_sha256(tiny_model_path)
    assert "largest pixel difference" in capsys.readouterr().out


def test_weights_digest_survives_packaging_and_guards_the_report(tiny_model_path: Path,
                                                                  tmp_path: Path) -> None:
    """An evaluation of the float16 file may be packaged into it: the weights digest matches;
    a report of other weights (float32 here) is refused and no file is left behind."""
    from model.package import package

    first = package(tiny_model_path, tmp_path / "a.pt")
    report = {"model": {"weights_sha256": weights_sha256(first)}}
    second = package(tiny_model_path, tmp_path / "b.pt", evaluation=report)
    assert file_sha256(first) != file_sha256(second)  # the metadata differs
    assert weights_sha256(first) == weights_sha256(second)
    with pytest.raises(ValueError, match="other weights"):
        package(tiny_model_path, tmp_path / "c.pt", half=False, evaluation=report)
    assert not (tmp_path / "c.pt").exists()
