"""The one device check (model/device.py), shared by the CLI, training and worker settings."""

from __future__ import annotations

import pytest
import torch

from model.device import autocast_dtype, check_device, native_bf16, resolve_device


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


@pytest.mark.parametrize(
    ("precision", "device", "expected"),
    [
        ("auto", "cpu", None),
        ("auto", "cuda", torch.bfloat16),
        ("bfloat16", "cpu", torch.bfloat16),
        ("bfloat16", "cuda", torch.bfloat16),
        ("float32", "cpu", None),
        ("float32", "cuda", None),
    ],
)
def test_autocast_dtype(precision: str, device: str, expected: torch.dtype | None) -> None:
    assert autocast_dtype(precision, torch.device(device)) is expected


def test_unknown_precision_is_named() -> None:
    with pytest.raises(ValueError, match="unknown precision 'half'; use auto, float32, bfloat16"):
        autocast_dtype("half", torch.device("cpu"))


def test_native_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for avx512, amx in [(False, False), (True, False), (False, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert native_bf16(torch.device("cpu")) == (avx512 or amx)
    assert native_bf16(torch.device("cuda"))
