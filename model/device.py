"""The one device check: a name (auto, cpu, cuda[:N]) to a ``torch.device``.

``check_device`` needs no torch, so settings classes can validate a name without importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def check_device(name: str) -> str:
    """``name`` if it is auto, cpu or cuda[:N]; else a ValueError naming the choices."""
    if name not in ("auto", "cpu") and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return name


#: Training precisions (``TrainConfig.precision``).
PRECISIONS = ("auto", "float32", "bfloat16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype training's forward passes autocast to, None for float32 throughout.

    ``auto``: bfloat16 on CUDA, float32 on a CPU (where bfloat16 pays only with native
    instructions); ``bfloat16`` and ``float32`` on any device. Weights, optimiser states and
    gradients stay float32 either way.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "float32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (any CUDA GPU here; on a CPU,
    AVX512-BF16 or AMX tiles, without which oneDNN emulates it, slower than float32)."""
    import torch

    if device.type == "cuda":
        return True
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error."""
    import torch

    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    return torch.device(name)
