"""Where jobs read and write: local folders and S3 prefixes behind one small interface.

``open_storage(uri, settings)`` gives a :class:`Storage` rooted at a local folder (a path or
``file://`` URI) or an S3 prefix (``s3://bucket/prefix/``). Keys are ``/``-separated paths
relative to that root. Untrusted locations (anything a request names) must stay under
``settings.data_root`` or in one of ``settings.allowed_buckets``; breaking out is a
``ValueError``. An unreachable S3 endpoint is a :class:`StorageError` (also a ValueError).
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from worker.settings import Settings

EMBEDDED_REDIS_FOLDER = "redis"
"""Folder of the data root where ``histosynth serve`` keeps its embedded Redis."""

RESERVED_FOLDERS = (EMBEDDED_REDIS_FOLDER, ".cache", "runs")
"""Folders of the data root that the service keeps: no job may write into them."""

MAX_NAME_BYTES = 255
"""Longest file or folder name (bytes) of common file systems."""


class StorageError(ValueError):
    """A storage backend could not be reached or refused the request."""


def check_key(key: str) -> str:
    """A relative ``/``-separated key without ``..``, ``.`` or empty parts."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid storage key {key!r}: keys are relative paths like 'images/a.png'")
    parts = PurePosixPath(key).parts
    if any(p in ("..", ".") for p in parts) or any(p == "" for p in key.split("/")[:-1]):
        raise ValueError(f"invalid storage key {key!r}: '..' and empty path parts are not allowed")
    return key


class Storage(ABC):
    """A folder-like location: keys are relative paths under :attr:`uri`."""

    uri: str

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` is a stored object/file."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The content of ``key`` (FileNotFoundError when absent)."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; readers never see a partial object."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with ``prefix`` (recursively)."""

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError when the location cannot be reached (readiness probes)."""

    def uri_for(self, key: str) -> str:
        """Full URI of ``key``."""
        return self.uri.rstrip("/") + "/" + check_key(key)

    def download(self, key: str, dest: Path) -> Path:
        """Copy ``key`` into the local file ``dest`` (atomically) and return it."""
        atomic_write(dest, self.read_bytes(key))
        return dest


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class LocalStorage(Storage):
    """A local folder; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key {key!r} leaves {self.root} (through a symlink?)")
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{self.uri_for(key)} does not exist")
        return path.read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        atomic_write(self._path(key), data)

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not _is_temp(k))

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"{self.root} is not a folder")
        if not os.access(self._nearest_existing(), os.W_OK):
            raise StorageError(f"{self.root} is not writable")

    def _nearest_existing(self) -> Path:
        path = self.root
        while not path.exists():
            path = path.parent
        return path

    def uri_for(self, key: str) -> str:
        return self._path(key).as_uri()

    def path_for(self, key: str) -> Path:
        """Local path of ``key`` (local storage only)."""
        return self._path(key)


def _is_temp(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith(".tmp")


class S3Storage(Storage):
    """An S3 prefix (AWS, MinIO, moto). Single PUTs are atomic in S3."""

    def __init__(self, client: Any, bucket: str, prefix: str, endpoint: str) -> None:
        self.client, self.bucket, self.endpoint = client, bucket, endpoint
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _fail(self, exc: Exception, what: str) -> StorageError:
        """A StorageError naming the endpoint and bucket for a botocore failure."""
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code, msg = err.get("Code", "?"), err.get("Message", str(exc))
            return StorageError(
                f"S3 {what} failed at {self.endpoint} (bucket {self.bucket!r}): {code} {msg}"
            )
        return StorageError(f"S3 endpoint {self.endpoint} is not reachable ({what}): {exc}")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, what) from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise self._fail(exc, f"HEAD {key}") from None
        except BotoCoreError as exc:
            raise self._fail(exc, f"HEAD {key}") from None
        return True

    def read_bytes(self, key: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return bytes(obj["Body"].read())
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise FileNotFoundError(f"{self.uri_for(key)} does not exist") from None
            raise self._fail(exc, f"GET {key}") from None
        except BotoCoreError as exc:
            raise self._fail(exc, f"GET {key}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._errors(f"PUT {key}"):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def list(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        with self._errors(f"LIST {self.prefix + prefix}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                keys.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
        return sorted(k for k in keys if k and not k.endswith("/"))

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"bucket {self.bucket!r} does not exist at {self.endpoint}") from None
            raise self._fail(exc, "HEAD bucket") from None
        except BotoCoreError as exc:
            raise self._fail(exc, "HEAD bucket") from None


_MISSING = ("404", "NoSuchKey", "NotFound")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the configured endpoint, with short connect timeouts."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        region_name=settings.s3_region,
        config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3}),
    )


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> (bucket, "some/prefix")."""
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"invalid S3 URI {uri!r}: expected s3://bucket/prefix/")
    if prefix.strip("/"):
        check_key(prefix.strip("/"))
    return bucket, prefix.strip("/")


def local_path_of(uri: str) -> Path:
    """The path named by a local URI (``file:///x`` or a plain path)."""
    if uri.startswith("file://"):
        rest = uri[len("file://"):]
        if rest and not rest.startswith("/"):
            raise ValueError(f"invalid file URI {uri!r}: use file:///absolute/path")
        return Path(rest or "/")
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ValueError(f"unsupported storage scheme {scheme!r} in {uri!r}; use a path, file:// or s3://")
    return Path(uri)


def resolve_local(uri: str, base: Path, *, trusted: bool = False) -> Path:
    """Resolve a local location: relative paths against ``base``; must stay under ``base``."""
    raw = local_path_of(uri)
    long = [part for part in raw.parts if len(part.encode()) > MAX_NAME_BYTES]
    if long:
        raise ValueError(
            f"path {uri[:80]!r}... has a folder name of {len(long[0].encode())} bytes; "
            f"names may have at most {MAX_NAME_BYTES}"
        )
    if not trusted and ".." in raw.parts:
        raise ValueError(f"path {uri!r} contains '..'; give a location under {base.resolve()}")
    path = (raw if raw.is_absolute() else base / raw).resolve()
    if not trusted and not path.is_relative_to(base.resolve()):
        raise ValueError(f"local location {uri!r} is outside the data root {base.resolve()}")
    return path


def open_storage(
    uri: str, settings: Settings, *, root: Path | None = None, trusted: bool = False
) -> Storage:
    """Open a location for reading and writing.

    Args:
        uri: ``s3://bucket/prefix/``, ``file:///abs/path`` or a path. Relative paths are
            taken relative to ``root`` (default ``settings.data_root``).
        settings: S3 endpoint and credentials, allowed buckets, data root.
        root: local base folder the location must stay under (default ``settings.data_root``).
        trusted: an operator-configured location (model store, CLI arguments): skips the
            data-root and allowed-bucket checks.
    """
    uri = uri.strip()
    if not uri:
        raise ValueError("empty storage location")
    if uri.startswith("s3://"):
        bucket, prefix = parse_s3_uri(uri)
        if not trusted and bucket not in settings.allowed_buckets:
            allowed = ", ".join(settings.allowed_buckets) or "none (set HISTOSYNTH_ALLOWED_BUCKETS)"
            raise ValueError(f"bucket {bucket!r} is not allowed; allowed buckets: {allowed}")
        endpoint = settings.s3_endpoint_url or "AWS S3"
        return S3Storage(s3_client(settings), bucket, prefix, endpoint)
    base = root if root is not None else settings.data_root
    return LocalStorage(resolve_local(uri, base, trusted=trusted))


def check_output_location(storage: Storage, settings: Settings) -> None:
    """ValueError unless a job may write into ``storage``.

    Not the data root itself, nor its folders that the service keeps (``RESERVED_FOLDERS``:
    the embedded Redis, caches, training runs), nor the model store.
    """
    store = open_storage(settings.model_store, settings, trusted=True)
    if _inside(storage, store):
        raise ValueError(f"{storage.uri} is (in) the model store {store.uri}; write elsewhere")
    if not isinstance(storage, LocalStorage):
        return
    root = settings.data_root.resolve()
    if storage.root == root:
        raise ValueError(f"{storage.uri} is the data root itself; name a folder under it")
    for name in RESERVED_FOLDERS:
        if storage.root.is_relative_to(root / name):
            reserved = ", ".join(RESERVED_FOLDERS)
            raise ValueError(
                f"{storage.uri} is in {name}/, a folder the service keeps; the data root's "
                f"reserved folders ({reserved}) are not allowed as job outputs"
            )


def _inside(storage: Storage, parent: Storage) -> bool:
    """Whether ``storage`` is ``parent`` or lies under it (an S3 bucket root holds all)."""
    if isinstance(storage, LocalStorage) and isinstance(parent, LocalStorage):
        return storage.root.is_relative_to(parent.root)
    if isinstance(storage, S3Storage) and isinstance(parent, S3Storage):
        return storage.bucket == parent.bucket and (
            storage.prefix.startswith(parent.prefix) or parent.prefix.startswith(storage.prefix)
        )
    return False


def copy_tree(src: Storage, dest: Path, prefix: str = "") -> list[Path]:
    """Download every key under ``prefix`` of ``src`` into the local folder ``dest``."""
    out = []
    for key in src.list(prefix):
        target = dest / check_key(key)
        if not target.exists():
            src.download(key, target)
        out.append(target)
    return out
