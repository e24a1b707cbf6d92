"""Loaded models by name: loaded once at start-up, new or re-published ones picked up live.

The registry asks the model store (:class:`worker.models.ModelStore`) what it holds and
loads each serving file once with :func:`model.pipeline.load_pipeline`. A request naming a
model the registry does not know yet looks it up in the store and loads it, so a freshly
trained model is served without a restart. :meth:`ModelRegistry.refresh` (at start-up and
on ``GET /models``) also reloads models whose checkpoint digest changed and forgets
removed ones.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from model.pipeline import Pipeline, load_pipeline
from worker.models import ModelStore

log = logging.getLogger("histosynth.service")


class UnknownModelError(KeyError):
    """No model of this name in the store."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known


class ModelLoadError(RuntimeError):
    """The store has the model but its file could not be loaded."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} could not be loaded: {reason}")
        self.name = name
        self.reason = reason


@dataclass
class Entry:
    """One model of the store: its store record and the loaded pipeline (or the error)."""

    info: Any
    pipeline: Pipeline | None = None
    error: str | None = None


class ModelRegistry:
    """Thread-safe name -> :class:`Pipeline` map backed by a model store.

    Args:
        store: the model store to list and fetch serving files from.
        device: torch device for every pipeline (``"auto"``, ``"cpu"``, ``"cuda"``...).
        default_model: name used when a request names no model.
    """

    def __init__(self, store: ModelStore, device: str, default_model: str) -> None:
        self.store = store
        self.device = device
        self.default_model = default_model
        self._entries: dict[str, Entry] = {}
        self._lock = threading.RLock()

    def refresh(self) -> None:
        """List the store; load new models, reload changed ones, forget removed ones.

        A model that failed to load is retried only when its file (digest) changes.
        """
        with self._lock:
            infos = self.store.list()
            for info in infos:
                old = self._entries.get(info.name)
                if old is not None and _sha(old.info) == _sha(info):
                    old.info = info
                    continue
                self._entries[info.name] = self._load(info)
            for gone in set(self._entries) - {i.name for i in infos}:
                del self._entries[gone]

    def _load(self, info: Any) -> Entry:
        try:
            path = self.store.local_path(info.name)
            pipeline = load_pipeline(path, device=self.device)
        except Exception as exc:  # a broken file must not take the service down
            log.error("cannot load model %r: %s", info.name, exc)
            return Entry(info=info, error=str(exc))
        log.info("loaded model %r (%s) on %s", info.name, pipeline.sha256[:12], pipeline.device)
        return Entry(info=info, pipeline=pipeline)

    def get(self, name: str) -> Pipeline:
        """The loaded pipeline ``name``; asks the store when it is not loaded yet.

        Raises:
            UnknownModelError: the store has no such model.
            ModelLoadError: the model exists but failed to load.
        """
        entry = self._entries.get(name)
        if entry is None or entry.pipeline is None:
            entry = self._load_one(name)
        if entry.pipeline is None:
            raise ModelLoadError(name, entry.error or "unknown error")
        return entry.pipeline

    def _load_one(self, name: str) -> Entry:
        """Load one model published since the last refresh (a failed load is not retried
        until its file changes)."""
        with self._lock:
            try:
                info = self.store.get(name)
            except (KeyError, ValueError):
                raise UnknownModelError(name, self._known()) from None
            old = self._entries.get(name)
            if old is None or _sha(old.info) != _sha(info):
                self._entries[name] = self._load(info)
            return self._entries[name]

    def _known(self) -> list[str]:
        try:
            return sorted(set(self._entries) | set(self.store.names()))
        except Exception:  # store unreachable: what we have loaded
            return self.names()

    def names(self) -> list[str]:
        """Names of every model the store listed, loaded or not."""
        return sorted(self._entries)

    def entries(self) -> dict[str, Entry]:
        """A snapshot of name -> entry."""
        with self._lock:
            return dict(sorted(self._entries.items()))

    def loaded(self) -> list[str]:
        """Names of the models ready to serve."""
        return [n for n, e in self.entries().items() if e.pipeline is not None]


def _sha(info: Any) -> str | None:
    return getattr(info, "sha256", None)
