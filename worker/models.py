"""The model store: published serving files plus the demo models bundled with the code.

Layout of the store (a local folder by default, or an S3 prefix)::

    <name>.pt     the serving file (see model/checkpoint.py)
    <name>.json   sidecar: name, sha256, size, classes, config, metadata, published_at

``publish`` writes both atomically, so a running service sees a new model on its next
lookup without a restart. Bundled models (``settings.bundled_models/<name>.pt``) have no
sidecar; their description is read from the file. A published model shadows a bundled
one of the same name.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from model.errors import UnknownNameError
from worker.settings import Settings
from worker.storage import LocalStorage, Storage, open_storage

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ModelInfo:
    """What a caller needs to know about a model without loading its networks.

    Args:
        name: model name (file stem).
        uri: where the serving file lives.
        sha256: hex digest of the serving file.
        size: bytes of the serving file.
        source: ``store`` (published) or ``bundled`` (shipped with the code).
        classes: the class table (``ClassTable.to_dict()``: names, raw values, colours).
        config: ``ModelConfig`` as a dict (``num_scales``, ...).
        metadata: training summary and provenance.
        path: local file when there is one without downloading.
    """

    name: str
    uri: str
    sha256: str
    size: int
    source: Literal["store", "bundled"]
    classes: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (path as a string)."""
        out = asdict(self)
        out["path"] = str(self.path) if self.path else None
        return out


def check_name(name: str) -> str:
    """Model names are file stems: letters, digits, ``.``, ``_``, ``-`` (at most 64)."""
    if not NAME_RE.fullmatch(name) or name.endswith(".pt") or ".." in name:
        raise ValueError(
            f"invalid model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe_file(path: Path) -> dict[str, Any]:
    """Classes, model config and metadata of a serving file (loads it on the CPU)."""
    from model.checkpoint import read_payload  # torch: only where a file must be opened

    payload = read_payload(path)
    return {
        "classes": dict(payload.get("classes") or {}),
        "config": dict(payload.get("model_config") or {}),
        "metadata": dict(payload.get("metadata") or {}),
    }


def bundled_names(folder: Path) -> list[str]:
    """Names of the serving files in a bundled-models folder."""
    if not folder.is_dir():
        return []
    return [p.stem for p in folder.glob("*.pt") if NAME_RE.fullmatch(p.stem)]


class ModelStore:
    """Published and bundled models by name.

    Args:
        settings: ``model_store`` (location), ``bundled_models`` (folder), ``cache_dir``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage: Storage = open_storage(settings.model_store, settings, trusted=True)
        self.bundled_dir = settings.bundled_models
        self._described: dict[tuple[str, int, int], tuple[str, dict[str, Any]]] = {}

    # ---- lookup -------------------------------------------------------------------
    def names(self) -> list[str]:
        """Sorted names of all models (published and bundled)."""
        published = {k[:-3] for k in self.storage.list() if k.endswith(".pt") and "/" not in k}
        return sorted(published | set(bundled_names(self.bundled_dir)))

    def list(self) -> list[ModelInfo]:
        """Every model, published ones first shadowing bundled ones of the same name."""
        return [self.get(name) for name in self.names()]

    def get(self, name: str) -> ModelInfo:
        """Describe one model; UnknownNameError (listing the known names) when there is none."""
        check_name(name)
        if self.storage.exists(f"{name}.pt"):
            return self._store_info(name)
        path = self.bundled_dir / f"{name}.pt"
        if path.is_file():
            return self._local_info(name, path, "bundled")
        known = ", ".join(self.names()) or "none"
        raise UnknownNameError(f"unknown model {name!r}; available models: {known}")

    def local_path(self, name: str) -> Path:
        """A local serving file for ``name`` (S3 models are downloaded into the cache)."""
        info = self.get(name)
        if info.path is not None:
            return info.path
        cached = self.settings.cache_dir / "models" / f"{name}-{info.sha256[:16]}.pt"
        if not cached.is_file() or file_sha256(cached) != info.sha256:
            self.storage.download(f"{name}.pt", cached)
        return cached

    # ---- publishing ---------------------------------------------------------------
    def publish(self, model_path: Path, name: str) -> ModelInfo:
        """Copy a serving file into the store as ``name`` (atomically) and describe it."""
        check_name(name)
        model_path = Path(model_path)
        description = describe_file(model_path)  # also rejects files that are not models
        data = model_path.read_bytes()
        sidecar = {
            "name": name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **description,
        }
        self.storage.write_bytes(f"{name}.pt", data)
        self.storage.write_bytes(f"{name}.json", json.dumps(sidecar, indent=1).encode())
        return self.get(name)

    # ---- helpers ------------------------------------------------------------------
    def _store_info(self, name: str) -> ModelInfo:
        if isinstance(self.storage, LocalStorage):
            return self._local_info(name, self.storage.path_for(f"{name}.pt"), "store")
        sidecar = self._sidecar(name)
        if sidecar is None:  # published by hand: describe a downloaded copy
            tmp = self.settings.cache_dir / "models" / f".{name}.describe.pt"
            self.storage.download(f"{name}.pt", tmp)
            info = self._local_info(name, tmp, "store")
            tmp.unlink()
            return ModelInfo(**{**asdict(info), "uri": self.storage.uri_for(f"{name}.pt"), "path": None})
        return ModelInfo(
            name=name,
            uri=self.storage.uri_for(f"{name}.pt"),
            sha256=str(sidecar["sha256"]),
            size=int(sidecar["size"]),
            source="store",
            classes=dict(sidecar.get("classes") or {}),
            config=dict(sidecar.get("config") or {}),
            metadata=dict(sidecar.get("metadata") or {}),
        )

    def _sidecar(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.storage.read_bytes(f"{name}.json"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) and "sha256" in data else None

    def _local_info(self, name: str, path: Path, source: Literal["store", "bundled"]) -> ModelInfo:
        """Describe a local file; digest and description are cached by (path, size, mtime)."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._described:
            sha = file_sha256(path)
            sidecar = self._sidecar(name) if source == "store" else None
            description = (
                {k: sidecar.get(k) or {} for k in ("classes", "config", "metadata")}
                if sidecar and sidecar.get("sha256") == sha
                else describe_file(path)
            )
            self._described[key] = (sha, description)
        sha, description = self._described[key]
        return ModelInfo(
            name=name, uri=path.as_uri(), sha256=sha, size=stat.st_size, source=source,
            path=path, **description,
        )

