"""Model lookup and list options shared by every command (model/arguments.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from model.arguments import REPO_ROOT, csv_ints, csv_list, resolve_model


def test_csv_options() -> None:
    assert csv_ints("1, 2,3,") == [1, 2, 3]
    assert csv_list(" a, b,, ") == ["a", "b"]
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated integers"):
        csv_ints("1,x")


def test_resolve_model(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(b"")
    assert resolve_model(str(path)) == path
    bundled = sorted((REPO_ROOT / "models").glob("*.pt"))
    if bundled:
        assert resolve_model(bundled[0].stem) == bundled[0]
    with pytest.raises(FileNotFoundError, match="no model file or bundled model named 'nope'"):
        resolve_model("nope")
