"""Mini FC-DenseNet (Jegou et al. 2017) and the residual pyramid segmenter (eq. 5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import ModelConfig, SegmenterConfig
from model.nets.blocks import Box, crop, cut_box, grow_box, half_box, pad_to_multiple, upsample
from model.nets.tiling import run_pieces

#: Piece side of the segmenter's levels on a CPU: a dense block's activations stay in cache.
PIECE = 64
#: Tile side of segmenter scales at inference: bounds memory at any image size (a tile's
#: activations); smaller scales run whole, so up to this side nothing is computed twice.
SEGMENT_TILE = 1024


class DenseLayer(nn.Sequential):
    """BN - ReLU - Conv3x3 (``growth`` channels) - Dropout."""

    def __init__(self, in_ch: int, growth: int, dropout: float) -> None:
        super().__init__(
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),  # BatchNorm's backward reads its input, not its output
            nn.Conv2d(in_ch, growth, 3, padding=1),
            nn.Dropout2d(dropout),
        )


class DenseBlock(nn.Module):
    """Dense layers, each fed with the block input and all previous layers' outputs.

    Args:
        in_ch: input channels.
        num_layers: dense layers.
        growth: channels each layer adds.
        dropout: dropout probability.
        keep_input: return cat(input, new features) (down path) or only the new
            features (up path, to keep the up path's width in check).
    """

    def __init__(
        self, in_ch: int, num_layers: int, growth: int, dropout: float, keep_input: bool
    ) -> None:
        super().__init__()
        self.keep_input, self.growth = keep_input, growth
        self.layers = nn.ModuleList(
            DenseLayer(in_ch + i * growth, growth, dropout) for i in range(num_layers)
        )
        self.out_ch = (in_ch if keep_input else 0) + num_layers * growth

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and not torch.is_grad_enabled():
            return self._forward_frozen(x)
        new: list[Tensor] = []
        for layer in self.layers:
            out = layer(torch.cat([x, *new], dim=1))  # (B, growth, H, W)
            new.append(out)
        return torch.cat([x, *new] if self.keep_input else new, dim=1)

    def _forward_frozen(self, x: Tensor) -> Tensor:
        """Inference (eval mode, no autograd): the same values without the quadratic copying.

        The plain pass concatenates the block input and every earlier output again for each
        layer, then runs BatchNorm and ReLU over the copy: three passes over a growing tensor
        per layer. Here every layer writes its ``growth`` channels into one buffer allocated
        once, and BatchNorm (its running statistics folded into a scale and shift) and ReLU
        read the buffer's leading channels directly: two passes, no concatenation.
        """
        b, c, h, w = x.shape
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        buf = torch.empty((b, c + len(self.layers) * self.growth, h, w), dtype=x.dtype, device=x.device,
                          memory_format=fmt)
        buf[:, :c].copy_(x)
        for layer in self.layers:
            bn, conv = layer[0], layer[2]
            scale, shift = _folded(bn, x.dtype)
            act = torch.empty((b, c, h, w), dtype=x.dtype, device=x.device, memory_format=fmt)
            torch.addcmul(shift, buf[:, :c], scale, out=act).relu_()
            buf[:, c:c + self.growth].copy_(conv(act))  # dropout: identity in eval mode
            c += self.growth
        return buf if self.keep_input else buf[:, x.shape[1]:]


def _folded(bn: nn.BatchNorm2d, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``x * scale + shift`` (each (1, C, 1, 1)).

    Cached on the module until its statistics or affine parameters change (an in-place
    update or a load bumps a tensor's version, a move or cast gives it another storage): a
    tiled pass asks for the same layer's pair once per piece, thousands of times per image.
    """
    assert bn.running_mean is not None and bn.running_var is not None
    sources = _bn_tensors(bn)
    key = (dtype, *[(t.data_ptr(), t._version) for t in sources])
    cached = bn.__dict__.get("_folded_cache")
    if cached is not None and cached[0] == key:
        return cached[1]
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    pair = scale.detach().to(dtype).view(1, -1, 1, 1), shift.detach().to(dtype).view(1, -1, 1, 1)
    # the sources' storages are kept alive with the pair, so no other tensor can take their addresses
    bn.__dict__["_folded_cache"] = (key, pair, [t.detach() for t in sources])
    return pair


def _bn_tensors(bn: nn.BatchNorm2d) -> list[Tensor]:
    return [t for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias) if t is not None]


class TransitionDown(nn.Sequential):
    """BN - ReLU - Conv1x1 - Dropout - MaxPool2x2."""

    def __init__(self, ch: int, dropout: float) -> None:
        super().__init__(
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 1),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2),
        )


def transition_up(ch: int) -> nn.ConvTranspose2d:
    """ConvTranspose3x3 stride 2 that exactly doubles H and W."""
    return nn.ConvTranspose2d(ch, ch, 3, stride=2, padding=1, output_padding=1)


class MiniFCDenseNet(nn.Module):
    """FC-DenseNet: conv, dense blocks with transitions down, bottleneck, mirrored up path.

    Inputs are padded to a multiple of ``2 ** len(down_layers)`` and the logits cropped
    back, so any H, W works.

    Args:
        in_ch: input channels.
        num_classes: K, output logit channels.
        cfg: segmenter hyperparameters.
    """

    def __init__(self, in_ch: int, num_classes: int, cfg: SegmenterConfig) -> None:
        super().__init__()
        g, p = cfg.growth_rate, cfg.dropout
        self.multiple = 2 ** len(cfg.down_layers)
        self.first = nn.Conv2d(in_ch, cfg.first_width, 3, padding=1)
        ch = cfg.first_width
        skips: list[int] = []
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        for n in cfg.down_layers:
            block = DenseBlock(ch, n, g, p, keep_input=True)
            ch = block.out_ch
            skips.append(ch)
            self.down.append(block)
            self.pools.append(TransitionDown(ch, p))
        self.bottleneck = DenseBlock(ch, cfg.bottleneck_layers, g, p, keep_input=False)
        ch = self.bottleneck.out_ch
        self.ups = nn.ModuleList()
        self.up = nn.ModuleList()
        for i, (n, skip) in enumerate(zip(reversed(cfg.down_layers), reversed(skips), strict=True)):
            last = i == len(skips) - 1
            self.ups.append(transition_up(ch))
            block = DenseBlock(ch + skip, n, g, p, keep_input=last)
            ch = block.out_ch
            self.up.append(block)
        self.last = nn.Conv2d(ch, num_classes, 1)
        #: Inference only: run every level in pieces of this side (cache-sized, same values;
        #: see :meth:`_forward_pieces`). Set by :func:`prepare_for_inference`.
        self.piece: int | None = None

    def forward(self, x: Tensor, box: Box | None = None) -> Tensor:
        """(B, C_in, H, W) -> logits (B, K, H, W), or only those of ``box`` (B, K, h, w).

        With ``box`` the down path and the bottleneck run on the whole input (the box's
        logits depend on all of it) and the up path only on the part of each level that the
        box needs (:meth:`_up_path_box`): the same values as the whole map's box, for a
        fraction of the up path's work.
        """
        if box is not None:
            _check_box(box, _hw(x))
            if self.training:
                raise ValueError("a box needs eval mode: BatchNorm's batch statistics span the whole map")
        x, size = pad_to_multiple(x, self.multiple)  # (B, C_in, H', W')
        if self.piece is not None and not self.training and max(x.shape[-2:]) > self.piece:
            out = crop(self._forward_pieces(x, _even(self.piece)), size)  # even: pooling pairs
            return out if box is None else cut_box(out, box)
        x = self.first(x)
        skips: list[Tensor] = []
        for block, pool in zip(self.down, self.pools, strict=True):
            x = block(x)
            skips.append(x)
            x = pool(x)  # (B, C, H / 2, W / 2)
        x = self.bottleneck(x)
        if box is not None:
            return self.last(self._up_path_box(x, skips, box))  # (B, K, h, w)
        for up, block, skip in zip(self.ups, self.up, reversed(skips), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))  # up: (B, C, 2H, 2W)
        return crop(self.last(x), size)  # (B, K, H, W)

    def _up_path_box(self, x: Tensor, skips: list[Tensor], box: Box) -> Tensor:
        """The up path's output on ``box`` only, from the bottleneck's output ``x`` and the skips.

        Traced back from the finest level: a level's dense block needs its input on its
        output box widened by one pixel per layer (3x3 convs; clipped at the image border,
        where the zero padding is the whole map's), and that input's upsampled half needs
        the coarser level's output on :func:`half_box` of it. Then each level runs forward
        on its boxes alone.
        """
        out_boxes: list[Box] = []  # finest level first
        in_boxes: list[Box] = []
        for block, skip in zip(reversed(self.up), skips, strict=True):
            out_boxes.append(box)
            in_boxes.append(grow_box(box, len(block.layers), _hw(skip)))
            coarse = _hw(skip)[0] // 2, _hw(skip)[1] // 2
            box = half_box(in_boxes[-1], coarse)
        x = cut_box(x, box)  # the bottleneck's output on the box the coarsest up level needs
        levels = zip(self.ups, self.up, reversed(skips), reversed(in_boxes), reversed(out_boxes), strict=True)
        for up, block, skip, in_box, out_box in levels:
            u = up(x)  # (B, C, 2h, 2w): the box's 2x upsampling, exact inside in_box
            u = cut_box(u, in_box, origin=(2 * box[0], 2 * box[1]))
            x = block(torch.cat([u, cut_box(skip, in_box)], dim=1))
            x = cut_box(x, out_box, origin=in_box[:2])
            box = out_box
        return x

    def receptive_radius(self) -> int:
        """Input pixels beyond itself that an output pixel depends on (conv reach, pooling
        pairs and transposed convs, summed over the down path, bottleneck and up path)."""
        r = 1  # first conv
        for level, block in enumerate(self.down):
            r += (len(block.layers) + 1) * 2**level  # dense convs, then the pooled pair
        r += len(self.bottleneck.layers) * 2 ** len(self.down)
        for level, block in enumerate(self.up[::-1]):
            r += 2 ** (level + 1) + len(block.layers) * 2**level  # transposed conv, dense convs
        return r

    def _forward_pieces(self, x: Tensor, piece: int) -> Tensor:
        """The forward pass level by level, each level's dense block in cache-sized pieces.

        A dense block re-reads its growing input for every layer (BN, ReLU, concatenation);
        on a whole large image every pass goes to memory and the thin convs run at a fraction
        of the machine's speed. On ``piece`` x ``piece`` crops with a halo as wide as the
        block's reach everything stays in cache and the stitched result is the same. Only
        the skips and each level's input are kept whole.
        """
        skips: list[Tensor] = []
        for i, (block, pool) in enumerate(zip(self.down, self.pools, strict=True)):
            first = self.first if i == 0 else nn.Identity()

            def down(t: Tensor, first: nn.Module = first, block: nn.Module = block,
                     pool: nn.Module = pool) -> tuple[Tensor, Tensor]:
                s = block(first(t))
                return s, pool(s)  # (B, C, h, w), (B, C, h / 2, w / 2)

            halo = _even(len(block.layers) + (i == 0))
            skip, x = run_pieces(down, [(x, 1)], _hw(x), piece, halo, (1, 2))
            skips.append(skip)
        halo = _even(len(self.bottleneck.layers))
        (x,) = run_pieces(lambda t: (self.bottleneck(t),), [(x, 1)], _hw(x), piece, halo, (1,))
        for i, (up, block, skip) in enumerate(zip(self.ups, self.up, reversed(skips), strict=True)):
            last = self.last if i == len(self.up) - 1 else nn.Identity()

            def rise(t: Tensor, s: Tensor, up: nn.Module = up, block: nn.Module = block,
                     last: nn.Module = last) -> tuple[Tensor]:
                return (last(block(torch.cat([up(t), s], dim=1))),)

            # the transposed conv is wrong on one row/column at a crop's far edges
            (x,) = run_pieces(rise, [(x, 2), (skip, 1)], _hw(skip), piece, _even(len(block.layers) + 1), (1,))
        return x


def _check_box(box: Box, size: tuple[int, int]) -> None:
    top, left, h, w = box
    if h < 1 or w < 1 or top < 0 or left < 0 or top + h > size[0] or left + w > size[1]:
        raise ValueError(f"box {box} is not inside the {size[0]}x{size[1]} input")


def _even(n: int) -> int:
    return n + n % 2


def _hw(x: Tensor) -> tuple[int, int]:
    return int(x.shape[-2]), int(x.shape[-1])


class ScaleSegmenter(nn.Module):
    """S_n: a MiniFCDenseNet on cat(image, softmax(coarser logits), z).

    The coarsest scale sees a uniform 1/K map in place of the coarser prediction; finer
    scales are residual: ``prev_up_logits + net(...)``.

    Args:
        num_classes: K.
        cfg: segmenter hyperparameters.
        coarsest: whether this is S_N.
    """

    def __init__(self, num_classes: int, cfg: SegmenterConfig, coarsest: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.coarsest = coarsest
        self.noise_channels = cfg.noise_channels
        self.net = MiniFCDenseNet(3 + num_classes + cfg.noise_channels, num_classes, cfg)

    def forward(self, image: Tensor, prev_up_logits: Tensor | None, z: Tensor, box: Box | None = None) -> Tensor:
        """Segment one scale.

        Args:
            image: (B, 3, H, W) in [-1, 1].
            prev_up_logits: (B, K, H, W) coarser logits upsampled; None at the coarsest.
            z: (B, Cs, H, W) input noise (zeros at inference).
            box: return only the logits of this box (the same values, less work).

        Returns:
            (B, K, H, W) logits, or (B, K, h, w) of ``box``.
        """
        if self.coarsest != (prev_up_logits is None):
            raise ValueError("the coarsest segmenter takes no coarser logits; finer ones need them")
        b, _, h, w = image.shape
        if prev_up_logits is None:
            probs = image.new_full((b, self.num_classes, h, w), 1.0 / self.num_classes)
        else:
            probs = F.softmax(prev_up_logits, dim=1)  # (B, K, H, W)
        logits = self.net(torch.cat([image, probs, z], dim=1), box)
        if prev_up_logits is None:
            return logits
        return (prev_up_logits if box is None else cut_box(prev_up_logits, box)) + logits


class PyramidSegmenter(nn.Module):
    """S_0..S_N indexed by n (0 finest).

    Args:
        cfg: model config.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_scales = cfg.num_scales
        last = cfg.num_scales - 1
        self.scales = nn.ModuleList(
            ScaleSegmenter(cfg.num_classes, cfg.segmenter, coarsest=n == last)
            for n in range(cfg.num_scales)
        )

    def noise_like(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training noise ``noise_std * N(0, 1)`` for an image (B, 3, H, W) -> (B, Cs, H, W)."""
        b, _, h, w = image.shape
        shape = (b, self.cfg.segmenter.noise_channels, h, w)
        z = torch.randn(shape, generator=generator, device=image.device, dtype=image.dtype)
        return self.cfg.segmenter.noise_std * z

    def forward_scale(
        self, n: int, image: Tensor, prev_logits_up: Tensor | None, z: Tensor | None = None,
        box: Box | None = None,
    ) -> Tensor:
        """Logits of scale n.

        Args:
            n: scale index.
            image: (B, 3, H, W) image of scale n.
            prev_logits_up: (B, K, h, w) logits of scale n + 1, upsampled here to (H, W)
                when their size differs; None at n = N.
            z: (B, Cs, H, W) noise; None means zeros.
            box: return only the logits of this box of scale n.

        Returns:
            (B, K, H, W) logits, or (B, K, h, w) of ``box``.
        """
        if z is None:
            b, _, h, w = image.shape
            z = image.new_zeros((b, self.cfg.segmenter.noise_channels, h, w))
        if prev_logits_up is not None:
            prev_logits_up = upsample(prev_logits_up, image.shape[-2:])  # (B, K, H, W)
        return self.scales[n](image, prev_logits_up, z, box)

    def forward(
        self,
        xs: Sequence[Tensor | None],
        zs: Sequence[Tensor | None] | None = None,
        stop_at: int = 0,
        box: Box | None = None,
    ) -> list[Tensor | None]:
        """Run from the coarsest scale N down to ``stop_at``.

        Args:
            xs: images indexed by n, (B, 3, H_n, W_n); entries below ``stop_at`` may be None.
            zs: noise indexed by n; None (or None entries) means zeros.
            stop_at: finest scale to compute.
            box: compute scale ``stop_at``'s logits on this box of it only (the coarser
                scales feed its whole input, so they run whole).

        Returns:
            Logits indexed by n, (B, K, H_n, W_n); None for n < stop_at; with ``box``
            scale ``stop_at``'s entry is (B, K, h, w).
        """
        zs = [None] * self.num_scales if zs is None else zs
        if len(xs) != self.num_scales or len(zs) != self.num_scales:
            raise ValueError(
                f"expected {self.num_scales} images and noise maps (one per scale), "
                f"got {len(xs)} and {len(zs)}"
            )
        if not 0 <= stop_at < self.num_scales:
            raise ValueError(f"stop_at must be in 0..{self.num_scales - 1}, got {stop_at}")
        out: list[Tensor | None] = [None] * self.num_scales
        prev: Tensor | None = None
        for n in range(self.num_scales - 1, stop_at - 1, -1):
            x = xs[n]
            if x is None:
                raise ValueError(f"image of scale {n} is missing")
            prev = self.forward_scale(n, x, prev, zs[n], box if n == stop_at else None)
            out[n] = prev
        return out

    @torch.no_grad()
    def labels(self, xs: Sequence[Tensor], tile: int | None = None) -> Tensor:
        """Class indices (B, H_0, W_0) of S_0 at inference (zero noise).

        Args:
            xs: images indexed by n, (B, 3, H_n, W_n), each half of the finer one.
            tile: scales larger than this run on tiles of about this side with a halo as wide
                as S_n's receptive field: memory stays that of one tile at any image size and
                the labels equal the untiled ones. None: whole scales.
        """
        if len(xs) != self.num_scales:
            raise ValueError(f"expected {self.num_scales} images (one per scale), got {len(xs)}")
        prev: Tensor | None = None
        for n in range(self.num_scales - 1, -1, -1):
            prev = self._scale_tiled(n, xs[n], prev, tile, final=n == 0)
        assert prev is not None
        return prev[:, 0].long()  # (B, H, W); the tiles' activations are freed by now

    def _scale_tiled(self, n: int, image: Tensor, prev: Tensor | None, tile: int | None,
                     final: bool) -> Tensor:
        """Logits of scale n (argmax (B, 1, H, W) when ``final``), tiled where it can be exact."""
        # the final labels are stitched as bytes: at 4096 x 4096 an int64 map is 128 MiB held
        # while the last tiles' activations are alive
        label_dtype = torch.uint8 if self.scales[n].num_classes <= 256 else torch.int64

        def run(img: Tensor, coarse: Tensor | None = None) -> tuple[Tensor]:
            logits = self.forward_scale(n, img, coarse)
            return (logits.argmax(1, keepdim=True).to(label_dtype) if final else logits,)

        h, w = _hw(image)
        net = self.scales[n].net
        m = net.multiple  # tiles on the net's pooling grid; sides off it are padded whole
        aligned = h % m == 0 and w % m == 0 and (prev is None or _hw(prev) == (h // 2, w // 2))
        if tile is None or max(h, w) <= tile or not aligned:
            return run(image, prev)[0]
        halo = _round_up(net.receptive_radius() + 1, m)  # + 1: bilinear upsampling at crop edges
        sources = [(image, 1)] + ([] if prev is None else [(prev, 2)])
        return run_pieces(run, sources, (h, w), _round_up(tile, m), halo, (1,))[0]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def prepare_for_inference(segmenter: PyramidSegmenter, piece: int | None) -> PyramidSegmenter:
    """Eval mode, channels-last weights and, with ``piece``, every scale's net run level by
    level in cache-sized pieces (a CPU's fast path; the values do not change)."""
    segmenter.eval().to(memory_format=torch.channels_last)
    for scale in segmenter.scales:
        scale.net.piece = piece
    for relu in segmenter.modules():
        if isinstance(relu, nn.ReLU):
            relu.inplace = True  # each follows a BatchNorm whose output nothing else reads
    return segmenter
