"""Every module imports on its own, so a broken import fails here and not in production."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import model
import service
import worker

MODULES = sorted(m.name for pkg in (model, worker, service)
                 for m in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}."))


def test_walk_finds_the_rooms() -> None:
    assert {"model.training.train", "model.evaluation.evaluate", "model.cli", "worker.jobs",
            "service.app"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
