"""Serving files and resumable training states.

A *serving file* (``model.pt``) holds only what inference needs: the model config, the
class table, metadata (training summary, provenance) and the generator and segmenter
weights, optionally in half precision. It rebuilds its own networks from the config it
stores. A *training state* (``state.pt``) adds discriminators, optimisers and RNG states
so that ``--resume`` continues exactly where a run stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.classes import ClassTable
from model.config import GeneratorConfig, ModelConfig, from_dict, to_dict
from model.nets.generator import PyramidGenerator
from model.nets.segmenter import PyramidSegmenter

FORMAT = "histosynth-model/1"


@dataclass
class LoadedModel:
    """Networks and descriptions rebuilt from a serving file."""

    config: ModelConfig
    classes: ClassTable
    metadata: dict[str, Any]
    generator: PyramidGenerator
    segmenter: PyramidSegmenter


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_state(module: torch.nn.Module, half: bool) -> dict[str, torch.Tensor]:
    """A CPU copy of a module's state dict, floating-point tensors in float16 if ``half``."""
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        out[k] = v.half() if half and v.is_floating_point() else v.clone()
    return out


def save_model(
    path: Path,
    generator: PyramidGenerator,
    segmenter: PyramidSegmenter,
    config: ModelConfig,
    classes: ClassTable,
    metadata: dict[str, Any],
    *,
    half: bool = False,
) -> Path:
    """Write a serving file (atomically) and return its path.

    Args:
        half: store floating-point weights as float16 (they are loaded back as float32).
    """
    payload = {
        "format": FORMAT,
        "model_config": to_dict(config),
        "classes": classes.to_dict(),
        "metadata": json.loads(json.dumps(metadata, default=str)),  # plain types only
        "generator": export_state(generator, half),
        "segmenter": export_state(segmenter, half),
    }
    atomic_save(payload, Path(path))
    return Path(path)


def read_payload(path: str | Path) -> dict[str, Any]:
    """The raw dict of a serving file, with clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise ValueError(f"{path} is not a readable HistoSynth model file: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a HistoSynth model file (expected format {FORMAT})")
    return payload


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild generator and segmenter from a serving file, in eval mode, float32."""
    payload = read_payload(path)
    if payload.get("arch", "ours") != "ours":
        raise ValueError(f"{path} holds a {payload['arch']} baseline; load it with load_pipeline")
    config = from_dict(ModelConfig, payload["model_config"])
    generator = PyramidGenerator(config)
    segmenter = PyramidSegmenter(config)
    generator.load_state_dict(to_float32(payload["generator"]))
    segmenter.load_state_dict(to_float32(payload["segmenter"]))
    generator.to(device).eval()
    segmenter.to(device).eval()
    return LoadedModel(
        config=config,
        classes=ClassTable.from_dict(payload["classes"]),
        metadata=dict(payload.get("metadata", {})),
        generator=generator,
        segmenter=segmenter,
    )


def to_float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float tensors of a stored state dict back to float32 (half-precision files)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_scales(path: str | Path, generator: PyramidGenerator, segmenter: PyramidSegmenter,
                config: ModelConfig, classes: ClassTable, scales: int | None = None) -> int:
    """Load the trained coarse scales of a (partial) serving file into a run's networks.

    Args:
        path: a serving file whose metadata ``scales_trained`` says how many of its coarsest
            scales are trained (a finished model: all).
        generator, segmenter: the run's pyramids; scales N .. N-K+1 are overwritten
            (weights and noise amplitudes).
        config: the run's model config; its generator and segmenter must equal the file's
            (the discriminator is not in serving files and may differ).
        classes: the run's class table (must equal the file's).
        scales: how many of the coarsest scales to reuse (default: all the file trained).

    Returns:
        K, the number of scales loaded; at least one scale is left to train.
    """
    payload = read_payload(path)
    stored = from_dict(ModelConfig, payload["model_config"])
    per_scale = {k: getattr(config.generator, k) for k in GeneratorConfig.PER_SCALE_FIELDS}  # checked per scale below
    comparable = dataclasses.replace(stored, discriminator=config.discriminator,
                                     generator=dataclasses.replace(stored.generator, **per_scale))
    if comparable != config:
        raise ValueError(f"{path} was made with another generator or segmenter config than this run's; "
                         "use the preset and --set overrides it was trained with")
    if ClassTable.from_dict(payload["classes"]).to_dict() != classes.to_dict():
        raise ValueError(f"{path} has another class table than the dataset")
    trained = int(payload["metadata"].get("scales_trained", config.num_scales))
    scales = trained if scales is None else scales
    if not 1 <= scales <= trained:
        raise ValueError(f"{path} has {trained} trained scale(s); reuse 1..{trained}, not {scales}")
    if scales >= config.num_scales:
        raise ValueError(f"{path} is fully trained; pass fewer scales to reuse to train the finer ones again")
    keep = range(config.num_scales - scales, config.num_scales)
    for n in keep:
        was, now = stored.generator.scale_settings(n), config.generator.scale_settings(n)
        for what in was:
            if was[what] != now[what]:
                raise ValueError(f"{path}: scale {n} was trained with {what} {was[what]}, this run has {now[what]}; "
                                 f"model.generator.{', '.join(GeneratorConfig.PER_SCALE_FIELDS)} may change only "
                                 "the scales trained anew")
    for net, part in ((generator, "generator"), (segmenter, "segmenter")):
        state = to_float32(payload[part])
        for n in keep:
            prefix = f"scales.{n}."
            net.scales[n].load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    for n in keep:
        generator.noise_amp[n] = payload["generator"]["noise_amp"][n].float()
    return scales


def weights_sha256(path: str | Path) -> str:
    """Hex sha256 of a serving file's networks (state dicts, config and classes), not of its
    metadata: packaging an evaluation report into the file keeps this digest."""
    payload = read_payload(path)
    h = hashlib.sha256()
    h.update(json.dumps({k: payload.get(k) for k in ("arch", "model_config", "classes")},
                        sort_keys=True).encode())
    for net in ("generator", "segmenter"):
        for key, tensor in sorted(payload.get(net, {}).items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{net}.{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
