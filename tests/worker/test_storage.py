"""Local and S3 storage: atomic writes, confinement, allowed buckets, moto round trip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.services import S3Service
from worker.settings import Settings
from worker.storage import (
    LocalStorage,
    S3Storage,
    StorageError,
    check_output_location,
    open_storage,
)


def settings_for(root: Path, **kw: object) -> Settings:
    return Settings(_env_file=None, data_root=root, **kw)


def test_local_round_trip_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_storage("out/run1", settings_for(tmp_path))
    assert isinstance(store, LocalStorage) and store.root == (tmp_path / "out/run1").resolve()
    store.write_bytes("images/a.png", b"old")
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append((a, b)), real_replace(a, b)))
    store.write_bytes("images/a.png", b"new")
    assert store.read_bytes("images/a.png") == b"new"
    tmp_name, final = replaced[0]
    assert Path(tmp_name).parent == Path(final).parent and str(final).endswith("a.png")
    assert store.list() == ["images/a.png"] and store.list("masks/") == []
    assert store.exists("images/a.png") and not store.exists("images/b.png")
    assert store.uri_for("images/a.png") == (tmp_path / "out/run1/images/a.png").as_uri()
    with pytest.raises(FileNotFoundError):
        store.read_bytes("nope.png")


@pytest.mark.parametrize("uri", ["../escape", "/etc", "file:///etc", "a/../../b"])
def test_locations_outside_data_root_are_rejected(tmp_path: Path, uri: str) -> None:
    with pytest.raises(ValueError, match="data root|'\\.\\.'"):
        open_storage(uri, settings_for(tmp_path / "data"))


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/abs", "", "a//b"])
def test_traversal_keys_are_rejected(tmp_path: Path, key: str) -> None:
    store = open_storage("out", settings_for(tmp_path))
    with pytest.raises(ValueError, match="invalid storage key"):
        store.write_bytes(key, b"x")


def test_symlink_escape_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "data" / "out").mkdir(parents=True)
    (tmp_path / "data" / "out" / "link").symlink_to(tmp_path)
    store = open_storage("out", settings_for(tmp_path / "data"))
    with pytest.raises(ValueError, match="leaves"):
        store.write_bytes("link/x.txt", b"x")


def test_trusted_locations_and_unknown_schemes(tmp_path: Path) -> None:
    s = settings_for(tmp_path / "data")
    assert isinstance(open_storage(str(tmp_path / "elsewhere"), s, trusted=True), LocalStorage)
    with pytest.raises(ValueError, match="unsupported storage scheme"):
        open_storage("ftp://host/x", s)


def test_disallowed_bucket_is_rejected(tmp_path: Path) -> None:
    s = settings_for(tmp_path, allowed_buckets=["ok"])
    with pytest.raises(ValueError, match="bucket 'evil' is not allowed; allowed buckets: ok"):
        open_storage("s3://evil/out/", s)
    with pytest.raises(ValueError, match="HISTOSYNTH_ALLOWED_BUCKETS"):
        open_storage("s3://ok/x", settings_for(tmp_path))


def test_unreachable_s3_names_the_endpoint(tmp_path: Path) -> None:
    from worker.embedded import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    s = settings_for(tmp_path, allowed_buckets=["b"], s3_endpoint_url=endpoint,
                     s3_access_key_id="x", s3_secret_access_key="y")
    store = open_storage("s3://b/p/", s)
    with pytest.raises(StorageError, match=f"S3 endpoint {endpoint} is not reachable"):
        store.exists("k")


@pytest.mark.integration
def test_s3_round_trip_against_moto(s3: S3Service, tmp_path: Path) -> None:
    s = settings_for(tmp_path, allowed_buckets=[s3.bucket], s3_endpoint_url=s3.endpoint_url,
                     s3_access_key_id="testing", s3_secret_access_key="testing")
    store = open_storage(f"s3://{s3.bucket}/storage-test/run", s)
    assert isinstance(store, S3Storage) and store.uri == f"s3://{s3.bucket}/storage-test/run/"
    store.check()
    store.write_bytes("images/a.png", b"abc")
    store.write_bytes("manifest.jsonl", b"{}\n")
    assert store.read_bytes("images/a.png") == b"abc"
    assert store.exists("images/a.png") and not store.exists("images/zzz.png")
    assert store.list() == ["images/a.png", "manifest.jsonl"]
    assert store.list("images/") == ["images/a.png"]
    assert store.uri_for("images/a.png") == f"s3://{s3.bucket}/storage-test/run/images/a.png"
    with pytest.raises(FileNotFoundError):
        store.read_bytes("missing")
    with pytest.raises(StorageError, match="bucket 'not-there' does not exist"):
        open_storage("s3://not-there/x", s, trusted=True).check()


@pytest.mark.parametrize(
    ("uri", "needle"),
    [(".", "the data root itself"), ("", "empty"), ("redis", "reserved"), ("redis/x", "reserved"),
     (".cache", "reserved"), ("runs/abc", "reserved"), ("models", "model store"),
     ("models/sub", "model store")],
)
def test_job_outputs_may_not_overwrite_what_the_service_keeps(
    tmp_path: Path, uri: str, needle: str
) -> None:
    settings = settings_for(tmp_path / "data", model_store="models")
    with pytest.raises(ValueError, match=needle):
        check_output_location(open_storage(uri, settings), settings)
    check_output_location(open_storage("out/run1", settings), settings)
    check_output_location(open_storage("modelsx", settings), settings)


def test_s3_output_may_not_be_the_model_store(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, model_store="s3://b/models", allowed_buckets=["b"])
    for uri in ("s3://b/models/", "s3://b/models/x/", "s3://b/"):
        with pytest.raises(ValueError, match="model store"):
            check_output_location(open_storage(uri, settings), settings)
    check_output_location(open_storage("s3://b/out/", settings), settings)


def test_overlong_names_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="255"):
        open_storage("x" * 300, settings_for(tmp_path))
    with pytest.raises(ValueError, match="255"):
        open_storage("a/" + "y" * 256 + "/b", settings_for(tmp_path), trusted=True)
