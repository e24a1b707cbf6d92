"""Augmentation without a queue: pair plan, seeds, resumption, sources and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.augment import TRANSFORMS, list_masks, pair_seed, plan_pairs, run_augment, transform
from worker.cli import main
from worker.schemas import AugmentJobRequest
from worker.settings import Settings
from worker.storage import LocalStorage


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_root=tmp_path / "data", model_store=str(tmp_path / "store"),
                    bundled_models=tmp_path / "bundled", device="cpu")


def augment(settings: Settings, model: Path, trusted: bool = False, **kw: object) -> dict:
    values: dict[str, object] = {"source": "ds", "output": "out", "variants_per_mask": 2, "noise": 0.5, **kw}
    req = AugmentJobRequest(**values)  # type: ignore[arg-type]
    return run_augment(req, settings, job_seed=3, report=lambda p: None, should_stop=lambda: False,
                       model_path=model, trusted=trusted)


def test_plan_is_deterministic_and_ordered() -> None:
    pairs = plan_pairs(["masks/a.png", "masks/b.png"], TRANSFORMS["flips"], 2, job_seed=5)
    assert len(pairs) == 12 and [p.index for p in pairs] == list(range(12))
    assert pairs[0].keys == ("images/000000_a_v0.png", "masks/000000_a_v0.png", "records/000000.json")
    assert pairs[3].stem == "000003_a_flip_h_v1"
    assert [p.seed for p in pairs] == [pair_seed(5, i) for i in range(12)]
    assert len({p.seed for p in pairs}) == 12 and pair_seed(5, 0) != pair_seed(6, 0)


@pytest.mark.parametrize("name", TRANSFORMS["all"])
def test_transforms_keep_labels(name: str) -> None:
    labels = np.arange(12).reshape(3, 4)
    out = transform(labels, name)
    assert sorted(out.ravel()) == list(range(12)) and out.flags.c_contiguous


def test_list_masks_prefers_a_dataset_masks_folder(tmp_path: Path) -> None:
    for key in ("masks/a.png", "masks/b.tif", "images/a.png", "top.png", "notes.txt"):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"")
    assert list_masks(LocalStorage(tmp_path)) == ["masks/a.png", "masks/b.tif"]
    shutil.rmtree(tmp_path / "masks")
    assert list_masks(LocalStorage(tmp_path)) == ["top.png"]
    with pytest.raises(ValueError, match="no mask files"):
        list_masks(LocalStorage(tmp_path / "images" / "none"))


def test_rerun_skips_finished_pairs_and_fills_gaps(
    settings: Settings, tiny_model_path: Path, synthetic_dataset_dir: Path
) -> None:
    shutil.copytree(synthetic_dataset_dir, settings.data_root / "ds")
    first = augment(settings, tiny_model_path)
    assert first["pairs"] == 8 and first["written"] == 8
    out = settings.data_root / "out"
    manifest = (out / "manifest.jsonl").read_text()
    (out / "records" / "000005.json").unlink()  # as if the worker died after the image
    (out / "manifest.jsonl").unlink()
    again = augment(settings, tiny_model_path)
    assert (again["written"], again["skipped"]) == (1, 7)
    assert (out / "manifest.jsonl").read_text() == manifest  # same seeds, same pairs
    assert len(list((out / "images").iterdir())) == 8
    mask = np.array(Image.open(out / "masks" / json.loads(manifest.splitlines()[0])["mask"].split("/")[1]))
    assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 1, 2}


def test_training_source_and_clear_errors(
    settings: Settings, tiny_model_path: Path, synthetic_dataset_dir: Path
) -> None:
    # the tiny model was trained on synthetic_dataset_dir, which its metadata names; it lies
    # outside the data root: the operator (CLI, trusted) may use it, an API job may not
    result = augment(settings, tiny_model_path, trusted=True, source="training",
                     variants_per_mask=1, transforms="rotations")
    assert result["pairs"] == 16
    with pytest.raises(ValueError, match="outside the data root"):
        augment(settings, tiny_model_path, source="training")
    with pytest.raises(ValueError, match="unknown class 'gland'"):
        augment(settings, tiny_model_path, trusted=True, source="training",
                relabel={"gland": "tumour"})
    with pytest.raises(ValueError, match="outside the data root"):
        augment(settings, tiny_model_path, source=str(synthetic_dataset_dir))


def test_cli_augment_and_its_errors(
    tmp_path: Path, tiny_model_path: Path, synthetic_dataset_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli-out"
    argv = ["augment", "--model", str(tiny_model_path), "--masks", str(synthetic_dataset_dir),
            "--out", str(out), "--seed", "4", "--relabel", "benign=tumour"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 4
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 4
    assert main([*argv[:-2], "--relabel", "benign"]) == 2
    assert "histosynth: error: --relabel takes FROM=TO" in capsys.readouterr().err
