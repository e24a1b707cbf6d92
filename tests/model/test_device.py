"""The one device check (model/device.py), shared by the CLI, training and worker settings."""

from __future__ import annotations

import pytest
import torch

from model.device import check_device, resolve_device


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1"])
def test_known_names_pass(name: str) -> None:
    assert check_device(name) == name


@pytest.mark.parametrize("name", ["gpu", "CPU", "", "tpu"])
def test_unknown_names_are_named(name: str) -> None:
    with pytest.raises(ValueError, match=f"unknown device {name!r}; use auto, cpu or cuda"):
        resolve_device(name)


def test_auto_and_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_an_error() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
