"""Command-line helpers shared by every room's ``register``: model lookup, list options, ``--set`` overrides."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_model(name_or_path: str) -> Path:
    """A serving file path, or a model name looked up in ./models and the bundled models/."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for folder in (Path.cwd() / "models", REPO_ROOT / "models"):
        candidate = folder / f"{name_or_path}.pt"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no model file or bundled model named {name_or_path!r} (looked in ./models and {REPO_ROOT / 'models'})")


def csv_ints(text: str) -> list[int]:
    """``1,2,3`` -> [1, 2, 3] (an argparse type)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def csv_list(text: str) -> list[str]:
    """``a, b,`` -> ['a', 'b'] (an argparse type)."""
    return [v.strip() for v in text.split(",") if v.strip()]


def setting(text: str) -> tuple[str, Any]:
    """``--set key=value`` (an argparse type): the value is JSON when it parses, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes key=value (e.g. train.lr_g=2e-4), got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def split_settings(settings: Iterable[tuple[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` pairs -> (model changes, train changes), lists as tuples (frozen configs)."""
    changes: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for key, value in settings:
        head, _, rest = key.partition(".")
        if head not in changes or not rest:
            raise ValueError(f"--set keys start with model. or train., got {key!r}")
        changes[head][rest] = tuple(value) if isinstance(value, list) else value
    return changes["model"], changes["train"]
