"""Model lookup, list options and --set overrides shared by every command (model/arguments.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from model.arguments import REPO_ROOT, csv_ints, csv_list, resolve_model, setting, split_settings


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


def test_setting_parses_json_values_and_keeps_strings() -> None:
    assert setting("train.lr_g=2e-4") == ("train.lr_g", 2e-4)
    assert setting('train.loss.mask_floor="real"') == ("train.loss.mask_floor", "real")
    assert setting("train.mode=ssl") == ("train.mode", "ssl")  # not JSON: the raw text
    with pytest.raises(argparse.ArgumentTypeError, match="key=value"):
        setting("train.lr_g")


def test_split_settings_sorts_model_and_train_and_freezes_lists() -> None:
    model, train = split_settings([("model.generator.dilations", [1, 2]), ("train.lr_g", 1e-3)])
    assert model == {"generator.dilations": (1, 2)} and train == {"lr_g": 1e-3}
    with pytest.raises(ValueError, match="start with model. or train."):
        split_settings([("lr_g", 1e-3)])
