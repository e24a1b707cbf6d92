"""Baseline serving files: the format of :mod:`model.checkpoint` plus an ``arch`` key.

A file without ``arch`` (or with ``arch: ours``) is our pyramid and loads with
:func:`model.checkpoint.load_model`; baseline files keep ``generator`` / ``segmenter`` state
dicts (empty for the network a baseline lacks) and a :class:`BaselineModelConfig`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.baselines.config import BaselineModelConfig
from model.baselines.nets import build_generator, build_segmenter, check_arch
from model.checkpoint import FORMAT, atomic_save, export_state, read_payload, to_float32
from model.classes import ClassTable
from model.config import from_dict, to_dict


@dataclass
class LoadedBaseline:
    """A baseline's networks (None where it has none) and descriptions."""

    config: BaselineModelConfig
    classes: ClassTable
    metadata: dict[str, Any]
    generator: nn.Module | None
    segmenter: nn.Module | None


def arch_of(payload: dict[str, Any]) -> str:
    """``ours`` for our pyramid's files (no ``arch`` key), else the baseline's name."""
    return str(payload.get("arch", "ours"))


def file_arch(path: str | Path) -> str:
    """The arch of a serving file (see :func:`arch_of`); memory-mapped, so cheap to peek."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy/corrupt/missing: read_payload raises the clear error
        payload = read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        payload = read_payload(path)
    return arch_of(payload)


def save_baseline(
    path: Path,
    config: BaselineModelConfig,
    classes: ClassTable,
    metadata: dict[str, Any],
    generator: nn.Module | None,
    segmenter: nn.Module | None,
    *,
    half: bool = False,
) -> Path:
    """Write a baseline serving file atomically and return its path.

    Args:
        generator, segmenter: the networks to serve (None: stored as an empty state dict).
        half: store floating-point weights as float16.
    """
    check_arch(config.arch)
    payload = {
        "format": FORMAT,
        "arch": config.arch,
        "model_config": to_dict(config),
        "classes": classes.to_dict(),
        "metadata": json.loads(json.dumps(metadata, default=str)),
        "generator": export_state(generator, half) if generator is not None else {},
        "segmenter": export_state(segmenter, half) if segmenter is not None else {},
    }
    atomic_save(payload, Path(path))
    return Path(path)


def load_baseline(path: str | Path, device: torch.device | str = "cpu") -> LoadedBaseline:
    """Rebuild a baseline's networks from its serving file, in eval mode, float32."""
    payload = read_payload(path)
    arch = arch_of(payload)
    if arch == "ours":
        raise ValueError(
            f"{path} is our pyramid, not a baseline; load it with model.checkpoint.load_model"
        )
    check_arch(arch)
    config = from_dict(BaselineModelConfig, payload["model_config"])
    nets = []
    for net, key in (
        (build_generator(config), "generator"),
        (build_segmenter(config), "segmenter"),
    ):
        if net is not None:
            net.load_state_dict(to_float32(payload[key]))
            net.to(device).eval()
        nets.append(net)
    return LoadedBaseline(
        config,
        ClassTable.from_dict(payload["classes"]),
        dict(payload.get("metadata", {})),
        nets[0],
        nets[1],
    )
