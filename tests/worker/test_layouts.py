"""Output layouts: the WebDataset tar shards, read back with the webdataset package."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from worker.augment import run_augment
from worker.cli import main
from worker.schemas import AugmentJobRequest
from worker.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, synthetic_dataset_dir: Path) -> Settings:
    shutil.copytree(synthetic_dataset_dir, tmp_path / "data" / "ds")
    return Settings(_env_file=None, data_root=tmp_path / "data", model_store=str(tmp_path / "store"),
                    bundled_models=tmp_path / "bundled", device="cpu")


def augment_wds(settings: Settings, model: Path, samples_per_tar: int = 3) -> dict:
    req = AugmentJobRequest(source="ds", output="wds", variants_per_mask=2, noise=0.5,
                            output_format="webdataset", samples_per_tar=samples_per_tar)
    return run_augment(req, settings, job_seed=9, report=lambda p: None, should_stop=lambda: False,
                       model_path=model)


def test_webdataset_shards_are_read_by_the_webdataset_package(settings: Settings, tiny_model_path: Path) -> None:
    result = augment_wds(settings, tiny_model_path)
    out = settings.data_root / "wds"
    assert result["pairs"] == 8 and result["format"] == "webdataset"
    tars = sorted((out / "shards").glob("*.tar"))
    assert [t.name for t in tars] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert not (out / "images").exists() and not (out / "masks").exists()
    samples = list(wds.WebDataset([str(t) for t in tars], shardshuffle=False).decode("rgb8"))
    assert len(samples) == 8
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in manifest] == list(range(8))
    for sample, record in zip(samples, manifest, strict=True):
        assert sample["__key__"] == record["key"] and sample["json"] == record
        assert sample["image.png"].shape == (96, 96, 3) and sample["image.png"].dtype == np.uint8
        assert sample["mask.png"].shape[:2] == (96, 96)
    assert [r["shard"] for r in manifest] == [f"shards/shard-00000{i // 3}.tar" for i in range(8)]


def test_webdataset_rerun_rewrites_only_incomplete_tars(settings: Settings, tiny_model_path: Path) -> None:
    augment_wds(settings, tiny_model_path)
    out = settings.data_root / "wds"
    first = (out / "shards" / "shard-000001.tar").read_bytes()
    (out / "records" / "shard-000001.jsonl").unlink()  # as if the worker died before the commit
    (out / "shards" / "shard-000001.tar").unlink()
    manifest = (out / "manifest.jsonl").read_text()
    again = augment_wds(settings, tiny_model_path)
    assert (again["written"], again["skipped"]) == (3, 5)
    assert (out / "shards" / "shard-000001.tar").read_bytes() == first  # same seeds, same bytes
    assert (out / "manifest.jsonl").read_text() == manifest
    with tarfile.open(out / "shards" / "shard-000002.tar") as tar:
        assert len(tar.getnames()) == 2 * 3  # the last tar holds the 2 remaining samples


def test_cli_writes_webdataset(tmp_path: Path, tiny_model_path: Path, synthetic_dataset_dir: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-wds"
    assert main(["augment", "--model", str(tiny_model_path), "--masks", str(synthetic_dataset_dir),
                 "--out", str(out), "--seed", "1", "--format", "webdataset", "--samples-per-tar", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 4
    assert [p.name for p in (out / "shards").iterdir()] == ["shard-000000.tar"]
