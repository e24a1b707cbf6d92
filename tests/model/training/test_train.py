"""Training: every mode runs, nothing turns NaN, run dir complete, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model.checkpoint import read_payload
from model.config import PRESETS, replace
from model.training.data import load_dataset
from model.training.detail import detail_axes
from model.training.train import Progress, train

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def dataset(synthetic_dataset_dir: Path):
    return load_dataset(synthetic_dataset_dir)


def _cfgs(dataset, **train_changes):
    return replace(TINY.model, num_classes=dataset.classes.num_classes), replace(TINY.train, **train_changes)


@pytest.mark.parametrize(
    "mode,extra",
    [("generate", {}), ("joint", {}), ("ssl", {"labeled_fraction": 0.5})],
)
def test_each_mode_trains_without_nan(dataset, tmp_path: Path, mode: str, extra: dict) -> None:
    model_cfg, train_cfg = _cfgs(dataset, mode=mode, **extra)
    result = train(model_cfg, train_cfg, dataset, tmp_path, name=f"t-{mode}")
    assert not result.stopped and result.model_path and result.model_path.is_file()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == model_cfg.num_scales * train_cfg.steps_per_scale
    losses = [v for r in records for k, v in r.items() if k.startswith("loss/")]
    assert losses and all(math.isfinite(v) for v in losses)
    has_s = any("loss/s_ce" in r for r in records)
    assert has_s == (mode != "generate")
    if mode == "ssl":
        assert any("loss/s_adv_u" in r for r in records)
    for n in range(model_cfg.num_scales):
        assert (tmp_path / "samples" / f"scale{n}.png").is_file()
    assert (tmp_path / "losses.png").is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["perceptual"].startswith("off")
    meta = read_payload(result.model_path)["metadata"]
    assert meta["mode"] == mode and meta["has_segmenter"] == (mode != "generate")


def test_noise_amplitudes_follow_reconstruction(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset)
    result = train(model_cfg, train_cfg, dataset, tmp_path, name="amp")
    amp = read_payload(result.model_path)["generator"]["noise_amp"]
    assert amp[-1] == pytest.approx(train_cfg.noise_amp_init)
    assert all(0 < float(a) < 1 for a in amp[:-1])  # 0.1 x RMSE of images in [-1, 1]


def test_resume_is_exact(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=3, checkpoint_every=2, holdout_steps=1)
    straight = train(model_cfg, train_cfg, dataset, tmp_path / "a", name="a")

    calls = {"n": 0}

    def stop_after_five() -> bool:
        calls["n"] += 1
        return calls["n"] == 6  # polled before each step: stop mid scale 1 after 5 steps

    first = train(model_cfg, train_cfg, dataset, tmp_path / "b", name="a", should_stop=stop_after_five)
    assert first.stopped and first.model_path is None
    resumed = train(model_cfg, train_cfg, dataset, tmp_path / "b", name="a", resume=True)
    a, b = read_payload(straight.model_path), read_payload(resumed.model_path)
    for part in ("generator", "segmenter"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resume"
    lines_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lines_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in lines_a]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in lines_b]


def test_bfloat16_on_the_cpu_trains_deterministically_and_differs_from_float32(dataset, tmp_path: Path) -> None:
    """``precision="bfloat16"`` autocasts the CPU forward passes (the CUDA default): a run
    trains without NaN, the same seed gives the same weights, and they are not float32's."""
    model_cfg, bf16 = _cfgs(dataset, steps_per_scale=3, holdout_steps=1, precision="bfloat16")
    runs = [train(model_cfg, bf16, dataset, tmp_path / name, name="p") for name in ("a", "b")]
    fp32 = train(model_cfg, replace(bf16, precision="float32"), dataset, tmp_path / "c", name="p")
    _same_weights(runs[0].model_path, runs[1].model_path)
    a, c = read_payload(runs[0].model_path), read_payload(fp32.model_path)
    assert a["metadata"]["train_config"]["precision"] == "bfloat16"
    assert all(torch.isfinite(v.float()).all() for v in a["generator"].values() if v.is_floating_point())
    differs = [k for k, v in a["generator"].items() if v.is_floating_point() and not torch.equal(v, c["generator"][k])]
    assert differs, "bfloat16 autocast changed nothing: it did not run"


def test_trainer_autocasts_to_the_configured_precision(dataset, tmp_path: Path) -> None:
    from model.training.train import Trainer

    model_cfg, cfg = _cfgs(dataset, precision="bfloat16")
    trainer = Trainer(model_cfg, cfg, dataset, tmp_path, "p", None, {})
    with trainer.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1)).dtype == torch.bfloat16
    trainer = Trainer(model_cfg, replace(cfg, precision="auto"), dataset, tmp_path / "auto", "p", None, {})
    with trainer.autocast():
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("native", [False, True])
def test_emulated_bfloat16_is_warned_about(dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture, native: bool) -> None:
    from model.training import train as train_module

    monkeypatch.setattr(train_module, "native_bf16", lambda device: native)
    model_cfg, cfg = _cfgs(dataset, precision="bfloat16")
    with caplog.at_level("WARNING", logger="histosynth.train"):
        train_module.Trainer(model_cfg, cfg, dataset, tmp_path, "p", None, {})
    assert ("emulated, slower than float32" in caplog.text) == (not native)


def _same_weights(a_path: Path, b_path: Path) -> None:
    a, b = read_payload(a_path), read_payload(b_path)
    for part in ("generator", "segmenter"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs"


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_log_every_k_steps_records_the_mean_and_trains_the_same(dataset, tmp_path: Path) -> None:
    """Reading the losses every 3 steps changes no weight; each record holds the mean of the
    steps since the last read (at step 3, then at the scale's end)."""
    model_cfg, every = _cfgs(dataset, steps_per_scale=4, checkpoint_every=100, holdout_steps=1)
    _, third = _cfgs(dataset, steps_per_scale=4, checkpoint_every=100, holdout_steps=1, log_every=3)
    a = train(model_cfg, every, dataset, tmp_path / "a", name="a")
    b = train(model_cfg, third, dataset, tmp_path / "b", name="a")
    _same_weights(a.model_path, b.model_path)
    per_step, read = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert [(r["scale"], r["step"], r.get("mean_of_steps", 1)) for r in read] == [
        (n, step, count) for n in (2, 1, 0) for step, count in ((3, 3), (4, 1))]
    for k, r in enumerate(read):
        steps = per_step[4 * (k // 2):][:3] if k % 2 == 0 else [per_step[4 * (k // 2) + 3]]
        for key in ("loss/d", "loss/g", "loss/s"):
            assert r[key] == pytest.approx(sum(s[key] for s in steps) / len(steps), abs=1e-5), (k, key)


def test_log_every_reads_before_a_checkpoint_so_a_resume_keeps_every_record(dataset, tmp_path: Path) -> None:
    model_cfg, cfg = _cfgs(dataset, steps_per_scale=4, checkpoint_every=2, holdout_steps=1, log_every=3)
    calls = {"n": 0}

    def stop_after_six() -> bool:
        calls["n"] += 1
        return calls["n"] == 7

    train(model_cfg, cfg, dataset, tmp_path / "b", name="a", should_stop=stop_after_six)
    train(model_cfg, cfg, dataset, tmp_path / "b", name="a", resume=True)
    train(model_cfg, cfg, dataset, tmp_path / "a", name="a")
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in _records(tmp_path / "a")]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in _records(tmp_path / "b")]
    assert [r["step"] for r in _records(tmp_path / "a")] == [2, 3, 4] * 3  # checkpoint, log_every, end


def test_each_finished_scale_is_a_partial_serving_file(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=2)
    result = train(model_cfg, train_cfg, dataset, tmp_path, name="p")
    trained = {n: read_payload(tmp_path / "scales" / f"scale{n}.pt")["metadata"]["scales_trained"] for n in (2, 1)}
    assert trained == {2: 1, 1: 2} and not (tmp_path / "scales" / "scale0.pt").exists()
    assert read_payload(result.model_path)["metadata"]["scales_trained"] == 3


def test_snapshots_are_written_before_and_every_k_steps(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=4, snapshot_every=2)
    result = train(model_cfg, train_cfg, dataset, tmp_path, name="p")
    names = sorted(f.name for f in (tmp_path / "snapshots").iterdir())
    assert names == sorted(f"scale{n}-step{k}.pt" for n in (2, 1, 0) for k in (0, 2, 4))
    first, last = (read_payload(tmp_path / "snapshots" / f"scale0-step{k}.pt") for k in (0, 4))
    assert last["metadata"]["snapshot"] == {"scale": 0, "step": 4} and last["metadata"]["scales_trained"] == 3
    assert read_payload(tmp_path / "snapshots" / "scale1-step2.pt")["metadata"]["scales_trained"] == 2
    final = read_payload(result.model_path)
    for key, value in final["generator"].items():
        assert torch.equal(value, last["generator"][key]), key  # the last snapshot is the model
    assert any(not torch.equal(v, first["generator"][k]) for k, v in final["generator"].items())


def test_no_snapshots_by_default(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=2)
    train(model_cfg, train_cfg, dataset, tmp_path, name="p")
    assert not (tmp_path / "snapshots").exists()


@pytest.mark.parametrize("stop_scale", [2, 1])
def test_init_from_continues_at_the_next_scale_and_equals_an_uninterrupted_run(
        dataset, tmp_path: Path, stop_scale: int) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=3, holdout_steps=1, augment=("translation", "cutout"))
    straight = train(model_cfg, train_cfg, dataset, tmp_path / "a", name="a")
    seen: list[Progress] = []
    partial = tmp_path / "a" / "scales" / f"scale{stop_scale}.pt"
    continued = train(model_cfg, train_cfg, dataset, tmp_path / "b", name="a", init_from=partial,
                      on_progress=seen.append)
    assert seen[0].scale == stop_scale - 1 and seen[0].done_steps == (3 - stop_scale) * 3 + 1
    _same_weights(straight.model_path, continued.model_path)
    meta = read_payload(continued.model_path)["metadata"]
    assert meta["init_from"]["scales"] == 3 - stop_scale and meta["scales_trained"] == 3


def test_init_scales_reuses_fewer_scales(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=2)
    first = train(model_cfg, train_cfg, dataset, tmp_path / "a", name="a")
    other = replace(train_cfg, steps_per_scale=3)
    seen: list[Progress] = []
    again = train(model_cfg, other, dataset, tmp_path / "b", name="a", init_from=first.model_path, init_scales=1,
                  on_progress=seen.append)
    assert [p.scale for p in seen] == [1, 1, 1, 0, 0, 0]
    a, b = read_payload(first.model_path)["generator"], read_payload(again.model_path)["generator"]
    assert all(torch.equal(v, b[k]) for k, v in a.items() if k.startswith("scales.2."))
    assert not torch.equal(a["scales.0.phi.2.weight"], b["scales.0.phi.2.weight"])


@pytest.mark.parametrize(
    "init_scales,message",
    [(None, "fully trained"), (0, "reuse 1..3"), (4, "reuse 1..3")],
)
def test_init_from_errors(dataset, tmp_path: Path, init_scales: int | None, message: str) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=1)
    done = train(model_cfg, train_cfg, dataset, tmp_path / "a", name="a")
    with pytest.raises(ValueError, match=message):
        train(model_cfg, train_cfg, dataset, tmp_path / "b", name="a", init_from=done.model_path,
              init_scales=init_scales)
    wider = replace(model_cfg, **{"generator.base_width": 4})
    with pytest.raises(ValueError, match="generator or segmenter config"):
        train(wider, train_cfg, dataset, tmp_path / "c", name="a", init_from=done.model_path, init_scales=1)


def test_init_from_with_wider_fine_scales(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=1)
    done = train(model_cfg, train_cfg, dataset, tmp_path / "a", name="a")
    wider = replace(model_cfg, **{"generator.fine_widths": (12, 10)})  # scales 0 and 1 anew, wider
    again = train(wider, train_cfg, dataset, tmp_path / "b", name="a", init_from=done.model_path, init_scales=1)
    a, b = read_payload(done.model_path)["generator"], read_payload(again.model_path)["generator"]
    assert all(torch.equal(v, b[k]) for k, v in a.items() if k.startswith("scales.2."))  # reused as it was
    def channels(n: int) -> int:
        return max(v.shape[0] for k, v in b.items() if k.startswith(f"scales.{n}.") and v.ndim == 4)

    assert (channels(0), channels(1)) == (12, 10)
    with pytest.raises(ValueError, match="scale 1 was trained with generator channels 8"):  # keeps its width
        train(wider, train_cfg, dataset, tmp_path / "c", name="a", init_from=done.model_path, init_scales=2)


def test_init_from_with_blurred_noise_at_the_fine_scales(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=1)
    done = train(model_cfg, train_cfg, dataset, tmp_path / "a", name="a")
    blurred = replace(model_cfg, **{"generator.noise_blur": (1.5, 1.0), "generator.noise_seeds": (5,),
                                    "generator.dilations": (1, 2), "generator.dilated_finest": 2,
                                    "generator.detail_rank": (1,)})  # anew
    again = train(blurred, train_cfg, dataset, tmp_path / "b", name="a", init_from=done.model_path, init_scales=1)
    a, b = read_payload(done.model_path), read_payload(again.model_path)
    assert all(torch.equal(v, b["generator"][k]) for k, v in a["generator"].items() if k.startswith("scales.2."))
    assert tuple(b["model_config"]["generator"]["noise_blur"]) == (1.5, 1.0)
    with pytest.raises(ValueError, match="scale 1 was trained with noise blur 0.0"):  # a reused scale keeps its noise
        train(blurred, train_cfg, dataset, tmp_path / "c", name="a", init_from=done.model_path, init_scales=2)


RECIPE_OPTIONS = {
    "model": {"generator.norm": "none", "generator.mask_input": "concat", "generator.output": "tanh",
              "discriminator.weight_norm": "spectral", "generator.noise_blur": (1.0, 0.5),
              "generator.noise_seeds": (5,), "generator.detail_rank": (2,)},
    "train": {"coarse_context": "receptive", "d_steps": 2, "augment": ("translation", "cutout"),
              "loss.rec_where": "coarse", "loss.rec_scales": 1, "loss.rec_noise": "fixed",
              "loss.rec_downsample": 2, "loss.diversity": 0.5, "loss.diversity_cap": 0.3, "loss.r1": 1.0,
              "loss.mask": 1.0, "loss.patch": 0.5, "loss.patch_size": 3, "critic.steps": 2, "critic.width": 4, "critic.dilations": (1, 2),
              "sample_every": 2, "lr_decay": 1.0, "ema": 0.9},
}


def test_recipe_options_train_and_resume_exactly(dataset, tmp_path: Path) -> None:
    model_cfg = replace(_cfgs(dataset)[0], **RECIPE_OPTIONS["model"])
    train_cfg = replace(_cfgs(dataset, steps_per_scale=3, checkpoint_every=2, holdout_steps=1)[1],
                        **RECIPE_OPTIONS["train"])
    straight = train(model_cfg, train_cfg, dataset, tmp_path / "a", name="a")
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [("loss/g_rec" in r) for r in records] == [True] * 3 + [False] * 6  # coarsest scale only
    assert all("loss/g_div" in r for r in records)  # every scale, the coarsest one too
    assert all(r["loss/d_r1"] > 0 for r in records)  # the R1 penalty in every D update
    assert all(r["loss/g_mask"] > 0 for r in records)  # the mask critic's term in every G update
    assert all(r["loss/g_patch"] > 0 for r in records)  # the patch-distribution term in every G update
    payload = read_payload(straight.model_path)
    meta = payload["metadata"]
    axes, shares = detail_axes(dataset.images, "tanh")  # measured on the real training images
    assert torch.equal(payload["generator"]["scales.0.detail_axes"], axes)
    assert "scales.1.detail_axes" not in payload["generator"]  # scale 1 adds every colour
    assert meta["detail_axes"]["variance_shares"] == pytest.approx(shares.tolist())
    assert sorted(meta["mask_critic"]) == ["0", "1", "2"]  # one critic per scale, trained on real pairs
    assert all(0 <= c["accuracy"] <= 1 and c["steps"] == 2 for c in meta["mask_critic"].values())
    assert [c["g_mask_end"] for c in meta["mask_critic"].values()] == pytest.approx(
        [r["loss/g_mask"] for r in records if r["step"] == train_cfg.steps_per_scale], abs=1e-6)  # beside the real CE
    for n in range(model_cfg.num_scales):  # mid-scale grids every sample_every steps, and the last
        assert (tmp_path / "a" / "samples" / f"scale{n}-step2.png").is_file()
        assert (tmp_path / "a" / "samples" / f"scale{n}.png").is_file()
    calls = {"n": 0}

    def stop_after_five() -> bool:
        calls["n"] += 1
        return calls["n"] == 6

    train(model_cfg, train_cfg, dataset, tmp_path / "b", name="a", should_stop=stop_after_five)
    state = torch.load(tmp_path / "b" / "state.pt", weights_only=False)  # stopped before step 2 of scale 1
    assert state["step"] == 2 and state["critic"] is not None  # the scale's frozen critic travels with it
    assert int(state["average"]["n_averaged"]) == 2  # and the generator's weight average
    lrs = {name: opt["param_groups"][0]["lr"] for name, opt in state["opt"].items()}
    factor = train_cfg.lr_factor(1)  # the rates of the last update made (step 1): decayed
    assert factor < 1
    for name, base in (("g", train_cfg.lr_g), ("d", train_cfg.lr_d), ("s", train_cfg.lr_s)):
        assert lrs[name] == pytest.approx(base * factor)
    resumed = train(model_cfg, train_cfg, dataset, tmp_path / "b", name="a", resume=True)
    _same_weights(straight.model_path, resumed.model_path)


def test_the_weight_average_changes_what_a_scale_keeps_not_how_it_trains(dataset, tmp_path: Path) -> None:
    """With ``ema`` a scale draws the same steps (the coarsest logs the same losses), and every
    finished scale keeps the average of its generator's weights instead of the last step's, on
    which the finer scales then train."""
    model_cfg, plain = _cfgs(dataset, steps_per_scale=4, holdout_steps=1, snapshot_every=2)
    a = train(model_cfg, plain, dataset, tmp_path / "a", name="a")
    b = train(model_cfg, replace(plain, ema=0.5), dataset, tmp_path / "b", name="a")
    strip_a, strip_b = ([{k: v for k, v in r.items() if k != "time_s"} for r in _records(tmp_path / run)]
                        for run in ("a", "b"))
    assert strip_a[:4] == strip_b[:4] and strip_a[4:] != strip_b[4:]
    last, averaged = read_payload(a.model_path)["generator"], read_payload(b.model_path)["generator"]
    weights = [k for k in last if k.startswith("scales.") and last[k].is_floating_point()]
    assert weights and all(not torch.equal(last[k], averaged[k]) for k in weights if last[k].abs().sum() > 0
                           and not k.endswith("bias"))  # every trained weight tensor: the average
    for k, value in read_payload(tmp_path / "b" / "snapshots" / "scale0-step4.pt")["generator"].items():
        assert torch.equal(value, averaged[k]), k  # snapshots hold what the scale keeps
    mid = read_payload(tmp_path / "b" / "snapshots" / "scale0-step2.pt")["generator"]
    assert any(not torch.equal(mid[k], averaged[k]) for k in weights)


def test_existing_state_needs_resume(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset)
    train(model_cfg, train_cfg, dataset, tmp_path, name="x", should_stop=lambda: True)
    with pytest.raises(ValueError, match="--resume"):
        train(model_cfg, train_cfg, dataset, tmp_path, name="x")


def test_sample_every_zero_writes_samples_only_at_scale_ends(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=2)
    train(model_cfg, replace(train_cfg, sample_every=0), dataset, tmp_path, name="s")
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["scale0.png", "scale1.png", "scale2.png"]


def test_a_new_run_does_not_append_to_a_stale_log(dataset, tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"scale": 0, "step": 1, "global_step": 5}\n')  # no state.pt
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=2)
    train(model_cfg, train_cfg, dataset, tmp_path, name="n")
    steps = [json.loads(line)["global_step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))


def test_progress_reports_every_step(dataset, tmp_path: Path) -> None:
    model_cfg, train_cfg = _cfgs(dataset, steps_per_scale=2)
    seen: list[Progress] = []
    train(model_cfg, train_cfg, dataset, tmp_path, name="p", on_progress=seen.append)
    assert [p.done_steps for p in seen] == list(range(1, 7))
    assert [p.scale for p in seen] == [2, 2, 1, 1, 0, 0]
    assert seen[-1].eta_s == pytest.approx(0.0, abs=1e-6) and "d" in seen[0].losses


@pytest.mark.parametrize(
    "change,message",
    [
        ({"num_classes": 5}, "classes"),
        ({"tile_size": 62}, "multiple"),
        ({"mode": "ssl"}, "unlabelled"),
        ({"lr_decay": -0.1}, "lr_decay"),
        ({"log_every": 0}, "log_every"),
        ({"ema": 1.0}, "ema must be in"),
        ({"checkpoint_every": 0}, "checkpoint_every must be at least 1, got 0"),
        ({"sample_every": -1}, "sample_every must be at least 0"),
        ({"snapshot_every": -2}, "snapshot_every must be at least 0"),
        ({"loss.mask": -1.0}, "loss.mask must be at least 0"),
        ({"loss.mask": 1.0, "critic.steps": 0}, "critic.steps must be at least 1"),
        ({"loss.mask_floor": "half"}, "mask_floor"),
    ],
)
def test_bad_configs_are_rejected(dataset, tmp_path: Path, change: dict, message: str) -> None:
    model_cfg, train_cfg = _cfgs(dataset)
    if "num_classes" in change:
        model_cfg = replace(model_cfg, **change)
    else:
        train_cfg = replace(train_cfg, **change)
    with pytest.raises(ValueError, match=message):
        train(model_cfg, train_cfg, dataset, tmp_path, name="bad")


def test_fused_adam_matches_the_plain_update() -> None:
    import torch

    from model.training.train import adam

    torch.manual_seed(0)
    fused_net, plain_net = torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(3, 8, 3)
    plain_net.load_state_dict(fused_net.state_dict())
    fused = adam(fused_net, 1e-3, (0.5, 0.999))
    plain = torch.optim.Adam(plain_net.parameters(), lr=1e-3, betas=(0.5, 0.999), foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(5):
        x = torch.randn(2, 3, 12, 12)
        for net, opt in ((fused_net, fused), (plain_net, plain)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(fused_net.parameters(), plain_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
