"""Mini FC-DenseNet and the residual pyramid segmenter."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig, SegmenterConfig
from model.nets.segmenter import (
    MiniFCDenseNet,
    PyramidSegmenter,
    ScaleSegmenter,
    prepare_for_inference,
)

TINY = SegmenterConfig(
    first_width=4, growth_rate=2, down_layers=(1, 1), bottleneck_layers=1, dropout=0.0
)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("k", [2, 4])
def test_default_segmenter_has_about_a_million_parameters(k: int) -> None:
    n = _params(MiniFCDenseNet(3 + k + 1, k, SegmenterConfig()))
    assert 800_000 <= n <= 1_300_000


@pytest.mark.parametrize(
    ("k", "h", "w", "cfg"),
    [
        (2, 16, 16, TINY),
        (4, 40, 56, TINY),
        (3, 7, 5, TINY),
        (2, 1, 1, TINY),
        (
            4,
            33,
            17,
            SegmenterConfig(
                first_width=4, growth_rate=2, down_layers=(1, 2, 1), bottleneck_layers=2
            ),
        ),
    ],
)
def test_any_size_works(k: int, h: int, w: int, cfg: SegmenterConfig) -> None:
    net = MiniFCDenseNet(3 + k + 1, k, cfg)
    assert net(torch.randn(2, 3 + k + 1, h, w)).shape == (2, k, h, w)


def test_default_segmenter_odd_size() -> None:
    net = MiniFCDenseNet(8, 4, SegmenterConfig()).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 8, 40, 56)).shape == (1, 4, 40, 56)


@pytest.mark.parametrize(("k", "scales", "h", "w"), [(2, 3, 16, 16), (4, 2, 40, 56), (3, 3, 24, 8)])
def test_pyramid_shapes(k: int, scales: int, h: int, w: int) -> None:
    s = PyramidSegmenter(ModelConfig(num_classes=k, num_scales=scales, segmenter=TINY))
    xs = [torch.randn(2, 3, h // 2**n, w // 2**n) for n in range(scales)]
    out = s(xs)
    for n, logits in enumerate(out):
        assert logits is not None and logits.shape == (2, k, *xs[n].shape[-2:])
    assert s(xs, stop_at=1)[0] is None


def test_finer_scale_uses_the_coarser_logits() -> None:
    seg = ScaleSegmenter(3, TINY, coarsest=False).eval()
    image, z = torch.randn(1, 3, 8, 8), torch.zeros(1, 1, 8, 8)
    prev = torch.randn(1, 3, 8, 8)
    a = seg(image, prev, z)
    b = seg(image, prev + torch.randn(1, 3, 8, 8), z)
    assert not torch.allclose(a, b)


def test_pyramid_upsamples_coarser_logits() -> None:
    s = PyramidSegmenter(ModelConfig(num_classes=2, num_scales=2, segmenter=TINY)).eval()
    image = torch.randn(1, 3, 16, 16)
    prev = torch.randn(1, 2, 8, 8)
    assert s.forward_scale(0, image, prev).shape == (1, 2, 16, 16)


def test_noise_changes_the_output_and_defaults_to_zeros() -> None:
    s = PyramidSegmenter(ModelConfig(num_classes=2, num_scales=1, segmenter=TINY)).eval()
    image = torch.randn(1, 3, 8, 8)
    z = s.noise_like(image)
    assert z.shape == (1, 1, 8, 8)
    assert torch.allclose(s([image])[0], s([image], [torch.zeros_like(z)])[0])
    assert not torch.allclose(s([image])[0], s([image], [z * 100])[0])


def test_gradients_flow_through_the_pyramid() -> None:
    s = PyramidSegmenter(ModelConfig(num_classes=2, num_scales=2, segmenter=TINY))
    image = torch.randn(2, 3, 16, 16, requires_grad=True)
    out = s([image, torch.nn.functional.avg_pool2d(image, 2)])
    out[0].square().mean().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    for scale in s.scales:
        assert all(p.grad is not None for p in scale.parameters())


@pytest.mark.parametrize("coarsest", [True, False])
def test_coarsest_flag_is_enforced(coarsest: bool) -> None:
    seg = ScaleSegmenter(2, TINY, coarsest=coarsest)
    image, z = torch.randn(1, 3, 8, 8), torch.zeros(1, 1, 8, 8)
    prev = None if not coarsest else torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match="coarsest"):
        seg(image, prev, z)


def test_wrong_number_of_scales() -> None:
    s = PyramidSegmenter(ModelConfig(num_classes=2, num_scales=2, segmenter=TINY))
    with pytest.raises(ValueError, match="one per scale"):
        s([torch.randn(1, 3, 8, 8)])


def _trained_like(seg: PyramidSegmenter) -> PyramidSegmenter:
    """Eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(3)
    for m in seg.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return seg.eval()


THREE_LEVELS = SegmenterConfig(first_width=6, growth_rate=3, down_layers=(2, 1, 2), bottleneck_layers=2, dropout=0.0)


@pytest.mark.parametrize("hw", [(64, 48), (136, 200), (72, 40)])
@pytest.mark.parametrize(("tile", "piece"), [(None, 8), (24, None), (40, 16), (64, 34), (500, 64)])
def test_tiled_segmentation_equals_untiled(hw: tuple[int, int], tile: int | None, piece: int | None) -> None:
    torch.manual_seed(0)
    seg = _trained_like(PyramidSegmenter(ModelConfig(num_classes=4, num_scales=3, segmenter=THREE_LEVELS)))
    x = torch.randn(1, 3, *hw)
    xs = [x, torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(x, 4)]
    with torch.no_grad():
        logits = seg(xs)[0]
        assert logits is not None
        prepare_for_inference(seg, piece)
        tiled = seg(xs)[0]
        labels = seg.labels(xs, tile)
    assert tiled is not None
    torch.testing.assert_close(tiled, logits, rtol=0, atol=1e-5)
    top2 = logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4  # labels of near-ties may flip with float rounding
    assert labels.shape == (1, *hw)
    assert torch.equal(labels[clear], logits.argmax(1)[clear])
    assert clear.float().mean() > 0.99


def test_tile_halo_is_the_receptive_field() -> None:
    net = MiniFCDenseNet(8, 4, THREE_LEVELS)
    # first conv 1; down (2+1) + (1+1) * 2 + (2+1) * 4; bottleneck 2 * 8; up (8 + 2 * 4) + (4 + 1 * 2) + (2 + 2)
    assert net.receptive_radius() == 1 + 3 + 4 + 12 + 16 + 16 + 6 + 4


@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_dense_blocks_equal_the_training_pass(channels_last: bool) -> None:
    """Eval mode without autograd takes the buffered dense-block path: the same logits."""
    torch.manual_seed(0)
    seg = _trained_like(PyramidSegmenter(ModelConfig(num_classes=4, num_scales=3, segmenter=THREE_LEVELS)))
    for m in seg.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # learnt affine parameters too
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.5, 0.5)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    seg.to(memory_format=fmt)
    x = torch.randn(2, 3, 40, 56).contiguous(memory_format=fmt)
    xs = [x, torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(x, 4)]
    plain = seg(xs)[0]  # autograd on: the concatenating pass
    with torch.no_grad():
        fast = seg(xs)[0]
    assert plain is not None and fast is not None and plain.requires_grad
    torch.testing.assert_close(fast, plain.detach(), rtol=0, atol=1e-5)
    assert not torch.equal(fast, torch.zeros_like(fast))


def test_inference_follows_changed_batchnorm_statistics() -> None:
    """The folded BatchNorm pairs are cached across calls, but never outlive a change: an
    in-place update, a loaded state or a cast gives the same logits as a fresh network."""
    torch.manual_seed(0)
    net = _eval_net_with_statistics(TINY)
    other = _eval_net_with_statistics(TINY)
    x = torch.randn(1, 3 + 2 + 1, 24, 24)

    def plain(n: MiniFCDenseNet, t: torch.Tensor) -> torch.Tensor:
        return n(t).detach()  # autograd on: the pass without the cache

    with torch.no_grad():
        net(x)  # fills the cache
        bn = net.down[0].layers[0][0]
        bn.running_var.mul_(3.0)  # in place
        torch.testing.assert_close(net(x), plain(net, x), rtol=0, atol=1e-5)
        net.load_state_dict(other.state_dict())
        torch.testing.assert_close(net(x), plain(other, x), rtol=0, atol=1e-5)
        net.double()
        torch.testing.assert_close(net(x.double()), plain(net, x.double()), rtol=0, atol=1e-9)


def _eval_net_with_statistics(cfg: SegmenterConfig, k: int = 2) -> MiniFCDenseNet:
    net = MiniFCDenseNet(3 + k + 1, k, cfg)
    for bn in net.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):  # running statistics that matter
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize(("h", "w"), [(64, 64), (37, 53), (8, 20)])
def test_logits_of_a_box_equal_that_box_of_the_whole_map(h: int, w: int) -> None:
    torch.manual_seed(0)
    net = _eval_net_with_statistics(SegmenterConfig(first_width=8, growth_rate=4, down_layers=(2, 2, 2),
                                                    bottleneck_layers=2, dropout=0.0))
    x = torch.randn(2, 6, h, w)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        whole = net(x)
        for _ in range(8):
            bh, bw = (int(torch.randint(1, s + 1, (1,), generator=gen)) for s in (h, w))
            top, left = int(torch.randint(0, h - bh + 1, (1,), generator=gen)), int(torch.randint(0, w - bw + 1, (1,), generator=gen))
            part = net(x, (top, left, bh, bw))
            torch.testing.assert_close(part, whole[..., top:top + bh, left:left + bw], rtol=0, atol=1e-5)


def test_a_box_runs_the_up_path_on_less_than_the_whole_map() -> None:
    net = _eval_net_with_statistics(TINY)
    seen: list[tuple[int, int]] = []
    net.last.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    with torch.no_grad():
        net(torch.randn(1, 6, 32, 32), (10, 12, 4, 6))
    assert seen == [(4, 6)]


def test_a_box_outside_the_input_or_in_training_mode_is_refused() -> None:
    net = _eval_net_with_statistics(TINY)
    with pytest.raises(ValueError, match="not inside the 16x16 input"):
        net(torch.randn(1, 6, 16, 16), (10, 0, 8, 4))
    with pytest.raises(ValueError, match="eval mode"):
        net.train()(torch.randn(1, 6, 16, 16), (0, 0, 4, 4))


def test_pyramid_box_applies_to_the_finest_scale_computed() -> None:
    torch.manual_seed(0)
    seg = PyramidSegmenter(ModelConfig(num_classes=2, num_scales=3, segmenter=TINY)).eval()
    xs = [torch.randn(1, 3, 32 // 2**n, 32 // 2**n) for n in range(3)]
    with torch.no_grad():
        whole = seg(xs, stop_at=1)
        boxed = seg(xs, stop_at=1, box=(3, 5, 7, 9))
    assert boxed[2] is not None and whole[2] is not None and torch.equal(boxed[2], whole[2])
    assert boxed[1] is not None and whole[1] is not None
    torch.testing.assert_close(boxed[1], whole[1][..., 3:10, 5:14], rtol=0, atol=1e-5)
