"""The model store: publish, list, bundled models, S3 store with a local cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.services import S3Service
from worker.models import ModelStore, file_sha256
from worker.settings import Settings


def make_store(tmp_path: Path, **kw: object) -> ModelStore:
    (tmp_path / "bundled").mkdir(exist_ok=True)
    values: dict[str, object] = {"data_root": tmp_path / "data", "model_store": str(tmp_path / "store"),
                                 "bundled_models": tmp_path / "bundled", **kw}
    return ModelStore(Settings(_env_file=None, **values))


def test_publish_list_get(tmp_path: Path, tiny_model_path: Path) -> None:
    store = make_store(tmp_path)
    assert store.list() == []
    info = store.publish(tiny_model_path, "tiny-a")
    assert info.name == "tiny-a" and info.source == "store"
    assert info.sha256 == file_sha256(tiny_model_path) and info.size == tiny_model_path.stat().st_size
    assert [c["name"] for c in info.classes["classes"]] == ["stroma", "benign", "tumour"]
    assert info.config["num_scales"] == 3 and info.metadata["name"] == "tiny-synthetic"
    assert (tmp_path / "store" / "tiny-a.pt").is_file() and (tmp_path / "store" / "tiny-a.json").is_file()
    assert store.local_path("tiny-a") == (tmp_path / "store" / "tiny-a.pt").resolve()
    assert [m.name for m in store.list()] == ["tiny-a"]
    # a second store object (another process) sees it without any restart
    assert make_store(tmp_path).get("tiny-a").sha256 == info.sha256


def test_bundled_models_are_found_and_shadowed(tmp_path: Path, tiny_model_path: Path) -> None:
    store = make_store(tmp_path)
    shutil.copy(tiny_model_path, tmp_path / "bundled" / "demo.pt")
    assert store.get("demo").source == "bundled"
    store.publish(tiny_model_path, "demo")
    assert store.get("demo").source == "store"
    assert store.names() == ["demo"]


def test_unknown_and_invalid_names(tmp_path: Path, tiny_model_path: Path) -> None:
    store = make_store(tmp_path)
    store.publish(tiny_model_path, "known")
    with pytest.raises(KeyError, match="unknown model 'nope'; available models: known"):
        store.get("nope")
    for bad in ("../x", "a/b", "", "x.pt", ".hidden", "known\n", "x" * 65):
        with pytest.raises(ValueError, match="invalid model name"):
            store.get(bad)


def test_publish_rejects_files_that_are_not_models(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable HistoSynth model"):
        make_store(tmp_path).publish(junk, "junk")


@pytest.mark.integration
def test_s3_store_downloads_into_the_cache(tmp_path: Path, tiny_model_path: Path, s3: S3Service) -> None:
    store = make_store(tmp_path, model_store=f"s3://{s3.bucket}/model-store-test",
                       s3_endpoint_url=s3.endpoint_url, s3_access_key_id="testing",
                       s3_secret_access_key="testing")
    info = store.publish(tiny_model_path, "remote")
    assert info.uri == f"s3://{s3.bucket}/model-store-test/remote.pt" and info.path is None
    assert store.get("remote").classes == info.classes
    local = store.local_path("remote")
    assert local.is_relative_to(tmp_path / "data" / ".cache") and file_sha256(local) == info.sha256
    assert "remote" in store.names()
