"""Command-line helpers shared by every room's ``register``: model lookup, list options."""

from __future__ import annotations

import argparse
from pathlib import Path

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
