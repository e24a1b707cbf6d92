"""Residual pyramid generator (eq. 1)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from model.config import GeneratorConfig, ModelConfig, Norm
from model.nets.blocks import one_hot, seed_points, smooth_noise
from model.nets.generator import PyramidGenerator, ScaleGenerator

TINY = GeneratorConfig(base_width=4, max_width=8, width_doubling=1, num_blocks=2)


def _pyramid(k: int, scales: int, norm: Norm = "batch") -> PyramidGenerator:
    gen = GeneratorConfig(base_width=4, max_width=8, width_doubling=1, num_blocks=2, norm=norm)
    return PyramidGenerator(ModelConfig(num_classes=k, num_scales=scales, generator=gen))


def _inputs(g: PyramidGenerator, k: int, h: int, w: int) -> tuple[list, list]:
    labels = torch.randint(0, k, (2, h, w))
    y = one_hot(labels, k)
    ys, zs = [], []
    for n in range(g.num_scales):
        ys.append(y)
        zs.append(g.noise_like(n, y))
        y = torch.nn.functional.avg_pool2d(y, 2)
    return ys, zs


@pytest.mark.parametrize(
    ("k", "scales", "h", "w"),
    [(2, 3, 16, 16), (4, 3, 16, 24), (3, 2, 10, 6), (2, 1, 7, 5), (4, 4, 24, 40)],
)
def test_pyramid_shapes(k: int, scales: int, h: int, w: int) -> None:
    g = _pyramid(k, scales)
    ys, zs = _inputs(g, k, h, w)
    out = g(ys, zs)
    assert len(out) == scales
    for n, x in enumerate(out):
        assert x is not None and x.shape == (2, 3, *ys[n].shape[-2:])


def test_stop_at_leaves_finer_scales_empty() -> None:
    g = _pyramid(2, 3)
    ys, zs = _inputs(g, 2, 16, 16)
    out = g(ys, zs, stop_at=1)
    assert out[0] is None and out[1] is not None and out[2] is not None


@pytest.mark.parametrize(
    ("base", "maximum", "doubling", "expected"),
    [
        (32, 128, 4, [32, 32, 32, 32, 64]),
        (8, 16, 1, [8, 16, 16, 16, 16]),
        (4, 64, 2, [4, 4, 8, 8, 16]),
    ],
)
def test_width_per_scale(base: int, maximum: int, doubling: int, expected: list[int]) -> None:
    gen = GeneratorConfig(base_width=base, max_width=maximum, width_doubling=doubling)
    g = PyramidGenerator(ModelConfig(num_scales=5, generator=gen))
    assert [g.width(n) for n in range(5)] == expected
    assert [g.scales[n].phi[0][0].out_channels for n in range(5)] == expected


def test_noise_amp_is_a_buffer_in_the_state_dict() -> None:
    g = _pyramid(2, 3)
    assert torch.equal(g.noise_amp, torch.ones(3))
    assert "noise_amp" in g.state_dict()
    assert "noise_amp" not in dict(g.named_parameters())


def test_noise_channels() -> None:
    gen = GeneratorConfig(base_width=4, max_width=8, num_blocks=1, noise_channels=5)
    g = PyramidGenerator(ModelConfig(num_scales=3, generator=gen))
    assert [g.noise_channels(n) for n in range(3)] == [3, 3, 5]


def test_coarsest_output_is_tanh_bounded() -> None:
    gen = ScaleGenerator(2, 4, TINY, coarsest=True)
    x = gen(one_hot(torch.randint(0, 2, (1, 8, 8)), 2), 10 * torch.randn(1, 3, 8, 8), None)
    assert x.abs().max() <= 1.0


def test_finer_scale_uses_the_coarser_image() -> None:
    g = _pyramid(2, 2, norm="instance").eval()
    ys, zs = _inputs(g, 2, 16, 16)
    prev = torch.rand(2, 3, 8, 8)
    a = g.forward_scale(0, ys[0], zs[0], prev)
    b = g.forward_scale(0, ys[0], zs[0], prev + 0.5)
    assert not torch.allclose(a, b)
    # residual: x_n - x_{n+1}^up is a tanh output
    up = torch.nn.functional.interpolate(prev, size=(16, 16), mode="bilinear", align_corners=False)
    assert (a - up).abs().max() <= 1.0


def test_noise_amp_scales_the_noise() -> None:
    g = _pyramid(2, 1, norm="none").eval()
    ys, zs = _inputs(g, 2, 8, 8)
    g.noise_amp.zero_()
    assert torch.allclose(g(ys, zs)[0], g(ys, [None])[0])
    g.noise_amp.fill_(1.0)
    assert not torch.allclose(g(ys, zs)[0], g(ys, [None])[0])


def test_gradients_reach_every_scale() -> None:
    g = _pyramid(3, 3)
    ys, zs = _inputs(g, 3, 16, 16)
    out = g(ys, zs)
    out[0].square().mean().backward()
    for n in range(3):
        grads = [p.grad for p in g.scales[n].parameters()]
        assert all(gr is not None for gr in grads)
        assert any(gr.abs().sum() > 0 for gr in grads)


@pytest.mark.parametrize(
    ("num_ys", "stop_at", "match"),
    [(2, 0, "one per scale"), (3, 3, "stop_at"), (3, -1, "stop_at")],
)
def test_bad_arguments(num_ys: int, stop_at: int, match: str) -> None:
    g = _pyramid(2, 3)
    ys, zs = _inputs(g, 2, 16, 16)
    with pytest.raises(ValueError, match=match):
        g(ys[:num_ys], zs[:num_ys], stop_at=stop_at)


def test_coarsest_rejects_a_coarser_image() -> None:
    gen = ScaleGenerator(2, 4, TINY, coarsest=True)
    y = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="coarsest"):
        gen(y, torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))


# ---- recipe options (issue 10) ------------------------------------------------------------
def _scale(**changes: object) -> ScaleGenerator:
    changes = {"num_blocks": 2, **changes}
    cfg = GeneratorConfig(base_width=4, max_width=8, **changes)  # type: ignore[arg-type]
    return ScaleGenerator(3, 4, cfg, coarsest=False).eval()


def test_concat_feeds_the_mask_to_every_conv() -> None:
    g = _scale(mask_input="concat", norm="none")
    convs = [m for m in g.phi.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.in_channels for c in convs] == [3 + 3, 4 + 3, 4 + 3]  # input, then width + K twice
    y = one_hot(torch.randint(0, 3, (1, 8, 8)), 3)
    z, prev = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    # the mask alone (past the first block) changes the output: zero the first block's mask weights
    with torch.no_grad():
        convs[0].weight[:, :3] = 0
    assert not torch.allclose(g(y, z, prev), g(torch.roll(y, 1, dims=1), z, prev))


def test_concat_stack_gives_the_same_output_in_either_memory_format() -> None:
    g = _scale(mask_input="concat", norm="none")
    x = torch.randn(2, 6, 12, 12)  # mask (3) + noisy coarser image (3)
    with torch.no_grad():
        plain = g.phi(x)
        g.phi.to(memory_format=torch.channels_last)
        fast = g.phi(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(plain, fast, atol=1e-5)


def test_input_mask_leaves_plain_stack() -> None:
    g = _scale()
    assert isinstance(g.phi, torch.nn.Sequential)
    assert [m.in_channels for m in g.phi.modules() if isinstance(m, torch.nn.Conv2d)] == [6, 4, 4]


def test_tanh_output_is_bounded_and_keeps_the_coarser_image() -> None:
    y = one_hot(torch.randint(0, 3, (2, 8, 8)), 3)
    prev = 3 * torch.randn(2, 3, 8, 8)  # far out of range
    bounded = _scale(output="tanh")
    with torch.no_grad():
        for p in bounded.phi.parameters():
            p.mul_(50)
    out = bounded(y, torch.randn(2, 3, 8, 8), prev)
    assert out.abs().max() <= 1.0
    residual = _scale(output="residual")
    assert residual(y, torch.zeros(2, 3, 8, 8), prev).abs().max() > 1.0
    identity = _scale(output="tanh")
    with torch.no_grad():
        for p in identity.phi.parameters():
            p.zero_()
    inside = prev.clamp(-0.9, 0.9)
    assert torch.allclose(identity(y, torch.zeros(2, 3, 8, 8), inside), inside, atol=1e-5)


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="mask_input"):
        _scale(mask_input="spade")
    with pytest.raises(ValueError, match="output"):
        _scale(output="clip")


@pytest.mark.parametrize("mask_input", ["input", "concat"])
def test_dilated_blocks_see_as_far_as_the_reach_says_on_any_side(mask_input: str) -> None:
    g = _scale(mask_input=mask_input, norm="none", num_blocks=3, dilations=(1, 2, 4))
    cfg = GeneratorConfig(num_blocks=3, dilations=(1, 2, 4))
    assert cfg.reach() == 8 and GeneratorConfig(num_blocks=3).reach() == 4
    side = 2 * cfg.reach() + 9
    x = torch.randn(1, 6, side, side, requires_grad=True)
    g.phi(x)[0, 0, side // 2, side // 2].backward()
    assert x.grad is not None
    rows = torch.nonzero(x.grad.abs().sum((0, 1, 3)) > 0).flatten()
    assert rows.max() - rows.min() + 1 == 2 * cfg.reach() + 1
    with torch.no_grad():  # zero padding: sides smaller than the dilation work
        assert g.phi(torch.randn(1, 6, 2, 3)).shape == (1, 3, 2, 3)


def test_dilations_must_give_one_value_per_block() -> None:
    with pytest.raises(ValueError, match="one per block"):
        _scale(dilations=(1, 2, 4))  # two blocks
    with pytest.raises(ValueError, match="one per block"):
        _scale(dilations=(1, 0))


def test_dilations_of_the_finest_scales_set_their_number_of_blocks() -> None:
    cfg = replace(TINY, dilations=(1,) * 5, dilated_finest=1)  # TINY: 2 blocks
    assert cfg.block_dilations(0) == (1,) * 5 and cfg.block_dilations(1) == (1, 1)
    assert cfg.reach(0) == 6 and cfg.reach(1) == 3
    g = PyramidGenerator(ModelConfig(num_classes=2, num_scales=3, generator=cfg))
    assert len(g.scales[0].phi) == 6 and len(g.scales[1].phi) == 3  # blocks + the output conv
    with pytest.raises(ValueError, match="values >= 1"):
        replace(TINY, dilations=(1, 0, 1), dilated_finest=1).block_dilations(0)


def test_fine_widths_set_the_finest_scales_only() -> None:
    rule = GeneratorConfig(base_width=8, max_width=64, width_doubling=1)
    wide = GeneratorConfig(base_width=8, max_width=64, width_doubling=1, fine_widths=(24, 20))
    assert [rule.width(n) for n in range(4)] == [8, 16, 32, 64]
    assert [wide.width(n) for n in range(4)] == [24, 20, 32, 64]
    pyramid = PyramidGenerator(ModelConfig(num_classes=2, num_scales=4, generator=wide))
    assert [pyramid.width(n) for n in range(4)] == [24, 20, 32, 64]
    with pytest.raises(ValueError, match="fine_widths"):
        GeneratorConfig(fine_widths=(0,))


def test_noise_blur_blurs_the_finest_scales_noise_only() -> None:
    cfg = GeneratorConfig(base_width=4, max_width=8, width_doubling=1, num_blocks=2, noise_blur=(2.0, 1.0))
    assert [cfg.noise_sigma(n) for n in range(4)] == [2.0, 1.0, 0.0, 0.0]
    blurred = PyramidGenerator(ModelConfig(num_classes=2, num_scales=3, generator=cfg)).eval()
    white = PyramidGenerator(ModelConfig(num_classes=2, num_scales=3, generator=replace(cfg, noise_blur=())))
    white.load_state_dict(blurred.state_dict())  # the blur has no parameters
    white.eval()
    ys, zs = _inputs(white, 2, 32, 32)
    with torch.no_grad():
        a, b = blurred(ys, zs), white(ys, zs)
        assert torch.equal(a[2], b[2])  # the coarsest scale's noise stays white
        assert not torch.equal(a[1], b[1])
        # G_0 with the blur equals G_0 without it fed the blurred map
        z0 = blurred.noise_amp[0] * zs[0]
        up = torch.nn.functional.interpolate(a[1], size=(32, 32), mode="bilinear", align_corners=False)
        assert torch.equal(blurred.scales[0](ys[0], z0, up), white.scales[0](ys[0], smooth_noise(z0, 2.0), up))
    for bad in ((-1.0,), (float("nan"),)):
        with pytest.raises(ValueError, match="noise_blur"):
            GeneratorConfig(noise_blur=bad)


def test_noise_seeds_turn_the_finest_scales_noise_into_points_before_the_blur() -> None:
    cfg = GeneratorConfig(base_width=4, max_width=8, width_doubling=1, num_blocks=2, noise_blur=(1.5,),
                          noise_seeds=(5,))
    assert [cfg.seed_window(n) for n in range(3)] == [5, 0, 0]
    g = PyramidGenerator(ModelConfig(num_classes=2, num_scales=2, generator=cfg)).eval()
    z = torch.randn(1, 3, 32, 32)
    y = torch.zeros(1, 2, 32, 32)
    up = torch.zeros(1, 3, 32, 32)
    white = ScaleGenerator(2, g.width(0), replace(cfg, noise_blur=(), noise_seeds=()), coarsest=False).eval()
    white.load_state_dict(g.scales[0].state_dict())
    with torch.no_grad():
        assert torch.equal(g.scales[0](y, z, up), white(y, smooth_noise(seed_points(z, 5), 1.5), up))
        assert not torch.equal(g.scales[0](y, z, up), white(y, smooth_noise(z, 1.5), up))
    with pytest.raises(ValueError, match="noise_seeds"):
        GeneratorConfig(noise_seeds=(-1,))


def test_dilated_finest_dilates_only_the_finest_scales() -> None:
    cfg = GeneratorConfig(base_width=4, max_width=8, width_doubling=1, num_blocks=3, mask_input="concat",
                          norm="none", dilations=(1, 2, 4), dilated_finest=1)
    assert [cfg.block_dilations(n) for n in range(3)] == [(1, 2, 4), (1, 1, 1), (1, 1, 1)]
    assert [cfg.reach(n) for n in range(3)] == [8, 4, 4]
    g = PyramidGenerator(ModelConfig(num_classes=2, num_scales=3, generator=cfg))
    assert [g.scales[n].phi.reach for n in range(3)] == [8, 4, 4]
    assert [c.dilation for c in g.scales[0].modules() if isinstance(c, torch.nn.Conv2d)][:3] == [(1, 1), (2, 2), (4, 4)]
    plain = PyramidGenerator(ModelConfig(num_classes=2, num_scales=3, generator=replace(cfg, dilations=())))
    assert g.scales[1].state_dict().keys() == plain.scales[1].state_dict().keys()
    assert all(c.dilation == (1, 1) for c in g.scales[1].modules() if isinstance(c, torch.nn.Conv2d))
    every = replace(cfg, dilated_finest=0)
    assert every.block_dilations(2) == (1, 2, 4)  # 0: every scale, as before
    with pytest.raises(ValueError, match="dilated_finest"):
        replace(cfg, dilated_finest=-1).block_dilations(0)


@pytest.mark.parametrize("gen", [
    TINY,
    replace(TINY, norm="none", mask_input="concat", output="tanh"),
    replace(TINY, norm="none", mask_input="concat", dilations=(1, 2), dilated_finest=1, noise_blur=(1.5,),
            noise_seeds=(3,)),
])
@pytest.mark.parametrize("stop_at", [0, 1])
@pytest.mark.parametrize("size", [(48, 40), (45, 37)])  # (45, 37): scales not exactly halved, run whole
def test_an_image_box_equals_that_box_of_the_whole_image(gen: GeneratorConfig, stop_at: int,
                                                          size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    g = PyramidGenerator(ModelConfig(num_classes=3, num_scales=3, generator=gen)).eval()
    g.noise_amp.uniform_(0.3, 1.0)
    ys, zs = _inputs(g, 3, *size)
    rng = torch.Generator().manual_seed(2)
    with torch.no_grad():
        whole = g(ys, zs, stop_at)[stop_at]
        assert whole is not None
        h, w = whole.shape[-2:]
        for _ in range(6):
            bh, bw = int(torch.randint(1, h + 1, (1,), generator=rng)), int(torch.randint(1, w + 1, (1,), generator=rng))
            top = int(torch.randint(0, h - bh + 1, (1,), generator=rng))
            left = int(torch.randint(0, w - bw + 1, (1,), generator=rng))
            part = g.forward_box(ys, zs, stop_at, (top, left, bh, bw))
            torch.testing.assert_close(part, whole[..., top:top + bh, left:left + bw], rtol=0, atol=1e-5)


def test_an_image_box_computes_each_scale_only_near_the_box() -> None:
    g = PyramidGenerator(ModelConfig(num_classes=2, num_scales=3, generator=TINY)).eval()
    seen: list[tuple[int, int]] = []
    for scale in g.scales:
        scale.phi.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    ys, zs = _inputs(g, 2, 64, 64)
    with torch.no_grad():
        g.forward_box(ys, zs, 0, (30, 30, 4, 4))
    reach = g.cfg.generator.reach(0)
    assert seen[-1] == (4 + 2 * reach, 4 + 2 * reach)  # scale 0: the box and its reach
    assert all(h < 64 // 2**(2 - i) for i, (h, _) in enumerate(seen[1:], 1))  # none runs whole


@pytest.mark.parametrize("rank", [1, 2])
def test_detail_rank_keeps_the_residual_on_its_colour_axes(rank: int) -> None:
    cfg = GeneratorConfig(base_width=4, max_width=8, num_blocks=2, norm="none", output="tanh")
    g = ScaleGenerator(3, 4, cfg, coarsest=False, colour_rank=rank).eval()
    axes, _ = torch.linalg.qr(torch.randn(3, 3))
    g.detail_axes.copy_(axes)
    y = one_hot(torch.randint(0, 3, (2, 8, 8)), 3)
    prev = 0.8 * torch.rand(2, 3, 8, 8) - 0.4
    with torch.no_grad():
        out = g(y, torch.randn(2, 3, 8, 8), prev)
    residual = torch.atanh(out) - torch.atanh(prev)  # Phi after the projection
    along = torch.einsum("ck,bchw->bkhw", axes, residual)
    assert along[:, :rank].abs().max() > 1e-3  # detail along the kept axes
    assert along[:, rank:].abs().max() < 1e-5  # none across them
    assert "detail_axes" in g.state_dict()
    assert "detail_axes" not in _scale(output="tanh").state_dict()  # rank 3: nothing stored, as before


def test_detail_rank_is_for_residual_scales_only() -> None:
    with pytest.raises(ValueError, match="detail_rank"):
        GeneratorConfig(detail_rank=(4,))
    cfg = replace(TINY, detail_rank=(2, 2))
    with pytest.raises(ValueError, match="coarsest"):
        PyramidGenerator(ModelConfig(num_classes=2, num_scales=2, generator=cfg))
    g = PyramidGenerator(ModelConfig(num_classes=2, num_scales=3, generator=cfg))
    assert [s.colour_rank for s in g.scales] == [2, 2, 3] and g.needs_detail_axes()
    axes = torch.linalg.qr(torch.randn(3, 3))[0]
    g.set_detail_axes(axes)
    assert torch.equal(g.scales[0].detail_axes, axes) and torch.equal(g.scales[1].detail_axes, axes)
    with pytest.raises(ValueError, match="3, 3"):
        g.set_detail_axes(torch.eye(2))
