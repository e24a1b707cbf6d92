"""Training batches: context of the coarser scales, reconstruction noise, crops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.config import PRESETS, replace
from model.training.batches import BatchMaker
from model.training.data import load_dataset
from model.training.train import Trainer


@pytest.fixture(scope="module")
def dataset(synthetic_dataset_dir: Path):
    return load_dataset(synthetic_dataset_dir)


def _trainer(dataset, tmp_path: Path, model: dict | None = None, **train_changes) -> Trainer:
    tiny = PRESETS["tiny"]
    model_cfg = replace(tiny.model, num_classes=dataset.classes.num_classes, **(model or {}))
    return Trainer(model_cfg, replace(tiny.train, **train_changes), dataset, tmp_path, "b", None, {})


def test_receptive_context_covers_the_coarser_scales(dataset, tmp_path: Path) -> None:
    model = {"num_scales": 4, "generator.num_blocks": 4}
    fixed = _trainer(dataset, tmp_path, model, crop_context=8)
    receptive = _trainer(dataset, tmp_path, model, crop_context=8, coarse_context="receptive")
    assert fixed.batches.context(0) == 8
    assert receptive.batches.context(0) == 6 * (2 + 4 + 8)  # (blocks + 2) px at scales 1..3
    assert receptive.batches.context(2) == max(8, 6 * 8)
    dilated = _trainer(dataset, tmp_path, {**model, "generator.dilations": (1, 2, 4, 8)}, crop_context=8,
                       coarse_context="receptive")
    assert dilated.batches.context(0) == (15 + 2) * (2 + 4 + 8)  # (dilations + 2) px at scales 1..3


@pytest.mark.parametrize("mode", ["fixed", "receptive", "tile"])
def test_crops_keep_their_size_with_every_context(dataset, tmp_path: Path, mode: str) -> None:
    t = _trainer(dataset, tmp_path, tile_size=64, crop_size=16, coarse_context=mode)
    t.rank = 2
    batch = t.batches.make(0).gen
    assert batch.x.shape[-2:] == (16, 16) and batch.up_fake is not None and batch.up_fake.shape[-2:] == (16, 16)


def test_fixed_reconstruction_noise_is_the_same_draw_every_step(dataset, tmp_path: Path) -> None:
    zeros = _trainer(dataset, tmp_path).batches.rec_noise(0, (2, 3, 8, 8))
    assert not zeros.any()
    fixed = _trainer(dataset, tmp_path, **{"loss.rec_noise": "fixed"}).batches
    a, b = fixed.rec_noise(0, (2, 3, 8, 8)), fixed.rec_noise(0, (2, 3, 8, 8))
    assert torch.equal(a, b) and 0.5 < float(a.std()) < 1.5
    assert not torch.equal(a, fixed.rec_noise(1, (2, 3, 8, 8)))


def test_split_reconstruction_pools_only_below_the_coarsest_scales(dataset, tmp_path: Path) -> None:
    t = _trainer(dataset, tmp_path, **{"loss.rec_where": "split", "loss.rec_scales": 1, "loss.rec": 1.0,
                                       "loss.rec_downsample": 4})
    coarsest = t.num_scales - 1
    t.rank = 0
    assert t.batches.make(coarsest).gen.rec_pooling == 1
    t.rank = 1
    batch = t.batches.make(t.scale_of(1)).gen
    assert batch.rec and batch.rec_pooling == 4 and batch.up_rec is not None


def test_no_reconstruction_pass_where_the_term_is_off(dataset, tmp_path: Path) -> None:
    t = _trainer(dataset, tmp_path, **{"loss.rec_where": "coarse", "loss.rec_scales": 1})
    t.rank = 1
    batch = t.batches.make(1).gen
    assert not batch.rec and batch.up_rec is None and batch.z_rec is None


def _frozen_up_to_scale_0(t: Trainer) -> None:
    """Train nothing, but freeze every coarser scale as training does before scale 0."""
    for rank in range(t.num_scales - 1):
        t._begin_scale(t.scale_of(rank))
        t._freeze(t.scale_of(rank))
        t.nets, t.rank = None, rank + 1


def _states(t: Trainer) -> list:
    samplers = [t.sampler] + ([t.unlabeled_sampler] if t.unlabeled_sampler is not None else [])
    return [t.gen.get_state(), *[s.state_dict() for s in samplers]]


def _restore(t: Trainer, states: list) -> None:
    t.gen.set_state(states[0])
    samplers = [t.sampler] + ([t.unlabeled_sampler] if t.unlabeled_sampler is not None else [])
    for s, state in zip(samplers, states[1:], strict=True):
        s.load_state_dict(state)


@pytest.mark.parametrize(("mode", "synthetic", "context"), [
    ("joint", True, "fixed"), ("joint", False, "fixed"), ("generate", False, "fixed"), ("ssl", True, "fixed"),
    ("joint", True, "tile"), ("generate", False, "tile"),  # a random window of the whole tile
])
def test_coarser_scales_on_the_window_equal_the_whole_region(
        dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, synthetic: bool, context: str) -> None:
    ssl = {"labeled_fraction": 0.5} if mode == "ssl" else {}
    t = _trainer(dataset, tmp_path, crop_size=16, crop_context=8, coarse_context=context, mode=mode,
                 **{"loss.rec_where": "all", "loss.rec": 1.0}, **ssl)
    _frozen_up_to_scale_0(t)
    boxes: list = []
    seg_forward, gen_box = t.segmenter.forward, t.generator.forward_box
    monkeypatch.setattr(t.segmenter, "forward", lambda *a, **k: boxes.append(k.get("box")) or seg_forward(*a, **k))
    monkeypatch.setattr(t.generator, "forward_box", lambda *a: boxes.append(a[-1]) or gen_box(*a))
    states = _states(t)
    fast = t.batches.make(0, synthetic)
    assert boxes and all(b is not None for b in boxes)
    # G's noisy pass (whole when S reads the synthetic pyramid: then S on it is boxed instead),
    # G's reconstruction pass, S on the real images, S on the unlabelled ones
    assert len(boxes) == 2 + (mode != "generate") + (mode == "ssl")
    _restore(t, states)
    monkeypatch.setattr(BatchMaker, "boxes", False)
    whole = t.batches.make(0, synthetic)
    pairs = [(fast.gen.x, whole.gen.x), (fast.gen.up_fake, whole.gen.up_fake), (fast.gen.up_rec, whole.gen.up_rec)]
    if mode != "generate":
        assert fast.seg is not None and whole.seg is not None
        pairs += [(fast.seg.s_prev, whole.seg.s_prev), (fast.seg.syn_prev, whole.seg.syn_prev)]
    if mode == "ssl":
        assert fast.unlabeled is not None and whole.unlabeled is not None
        pairs += [(fast.unlabeled.u_prev, whole.unlabeled.u_prev)]
    for a, b in pairs:
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape == (*a.shape[:2], 16, 16)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
