"""Losses of eq. 2-8 as pure functions, and the VGG19 perceptual loss (local weights file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import AdvLoss

DiscOutput = list[tuple[Tensor, list[Tensor]]]

# torchvision's vgg19 "E" configuration: conv widths, "M" = max pool.
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip
# Indices into ``features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG19_TAPS: tuple[int, ...] = (1, 6, 11, 20, 29)
PERCEPTUAL_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---- GAN losses ---------------------------------------------------------------------
def adversarial(
    out: DiscOutput, target_is_real: bool, kind: AdvLoss, for_discriminator: bool
) -> Tensor:
    """Adversarial loss averaged over the discriminator's views.

    Args:
        out: discriminator output, one (logits, features) per view.
        target_is_real: whether the pair should be judged real.
        kind: ``lsgan`` (MSE to 1/0), ``log`` (BCE with logits, eq. 6) or ``hinge``.
        for_discriminator: the D update (hinge margins) rather than the G/S update.

    Returns:
        Scalar loss.
    """
    if not out:
        raise ValueError("discriminator output is empty")
    losses = [
        _adversarial_view(logits, target_is_real, kind, for_discriminator) for logits, _ in out
    ]
    return torch.stack(losses).mean()


def _adversarial_view(logits: Tensor, real: bool, kind: AdvLoss, for_discriminator: bool) -> Tensor:
    if kind == "lsgan":
        return F.mse_loss(logits, torch.full_like(logits, float(real)))
    if kind == "log":
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))
    if kind == "hinge":
        if for_discriminator:
            return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
        return -logits.mean() if real else logits.mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; choose lsgan, log or hinge")


def feature_matching(real: DiscOutput, fake: DiscOutput) -> Tensor:
    """L1 between D's intermediate features of real and fake pairs (eq. 4).

    pix2pixHD weighting: each view weighs 1 / num_views, each layer 4 / num_layers.
    Real features are detached.

    Args:
        real: discriminator output on the real pair.
        fake: discriminator output on the generated pair.

    Returns:
        Scalar loss.
    """
    if len(real) != len(fake) or not real:
        raise ValueError(f"feature matching needs matching views, got {len(real)} and {len(fake)}")
    loss = fake[0][0].new_zeros(())
    for (_, feats_r), (_, feats_f) in zip(real, fake, strict=True):
        if len(feats_r) != len(feats_f) or not feats_r:
            raise ValueError("feature matching needs the same non-empty layers for real and fake")
        weight = 4.0 / len(feats_r) / len(real)
        for fr, ff in zip(feats_r, feats_f, strict=True):
            loss = loss + weight * F.l1_loss(ff, fr.detach())
    return loss


def r1_penalty(out: DiscOutput, real: Tensor) -> Tensor:
    """R1: mean over the batch of the squared norm of d(sum of D's logits)/d(real image).

    Args:
        out: D's output on ``real``, one (logits, features) per view.
        real: the real images D judged, with ``requires_grad`` set.

    Returns:
        Scalar penalty, differentiable with respect to D's parameters.
    """
    if not real.requires_grad:
        raise ValueError("r1_penalty needs the real images with requires_grad=True")
    total = torch.stack([logits.float().sum() for logits, _ in out]).sum()
    (grad,) = torch.autograd.grad(total, real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def reconstruction(x: Tensor, target: Tensor, downsample: int = 1) -> Tensor:
    """Mean squared error between a reconstruction and its target (eq. 3).

    Args:
        downsample: average-pool both by this factor first (1: full resolution), so only
            the layout is regressed, not where each nucleus sits.
    """
    if downsample < 1:
        raise ValueError(f"rec_downsample must be >= 1, got {downsample}")
    if downsample > 1:
        x, target = F.avg_pool2d(x, downsample, ceil_mode=True), F.avg_pool2d(target, downsample, ceil_mode=True)
    return F.mse_loss(x, target)


def mode_seeking_ratio(generator: Callable[..., Tensor], y: Tensor, z: Tensor, up: Tensor | None, fake: Tensor
                       ) -> Tensor:
    """|G(z) - G(z')| / |z - z'| with z' = z turned by 180 degrees (MSGAN's mode-seeking term).

    The turned map is a second draw from the same i.i.d. distribution that costs no random
    numbers (the training streams stay as they were) and works at batch size 1.

    Args:
        generator: G_n, called as ``generator(y, z, up)``.
        y: (B, K, h, w) mask; z: (B, C, h, w) scaled noise; up: (B, 3, h, w) coarser image
            (None at the coarsest scale).
        fake: ``generator(y, z, up)``, already computed.
    """
    z2 = torch.flip(z, dims=(-2, -1))
    fake2 = generator(y, z2, up)
    return (fake - fake2).abs().mean() / (z - z2).abs().mean().clamp_min(1e-8)


def patch_distribution(fake: Tensor, real: Tensor, labels: Tensor, size: int, projections: int) -> Tensor:
    """Sliced Wasserstein distance between the ``size`` x ``size`` patches of ``fake`` and
    ``real``, class by class (GPDM, Elnekave and Weiss 2022; here per mask class).

    Every patch is projected on ``projections`` random unit directions (torch's global RNG),
    and within each class (the label at the patch's centre, over the whole batch) the
    sorted projections of the fake patches are compared with the sorted projections of the
    real ones. Real and fake share the mask, so each class has as many patches in both. The
    loss pulls the distribution of G's patches (nuclei, their size and density, fibres)
    towards the real crop's without asking for any patch at any place, unlike a
    reconstruction. Computed in float32.

    Args:
        fake, real: (B, C, H, W) images; real is not differentiated.
        labels: (B, H, W) class indices of both.
        size: patch side in pixels (odd).
        projections: number of random directions.

    Returns:
        Scalar: mean over directions and patches of the squared difference of the sorted
        projections.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"patch size must be a positive odd number of pixels, got {size}")
    if projections < 1:
        raise ValueError(f"patch projections must be >= 1, got {projections}")
    b, c, h, w = fake.shape
    if h < size or w < size:
        raise ValueError(f"patches of {size} px need images at least that large, got {h}x{w}")
    with torch.autocast(fake.device.type, enabled=False):
        dirs = torch.randn(projections, c * size * size, device=fake.device)
        dirs = (dirs / dirs.norm(dim=1, keepdim=True)).view(projections, c, size, size)
        pf = F.conv2d(fake.float(), dirs).permute(1, 0, 2, 3).flatten(1)  # (P, B*h'*w')
        with torch.no_grad():
            pr = F.conv2d(real.float(), dirs).permute(1, 0, 2, 3).flatten(1)
        r = size // 2
        centre = labels[:, r:h - r, r:w - r].reshape(-1)
        total = fake.new_zeros((), dtype=torch.float32)
        for k in torch.unique(centre).tolist():
            at = (centre == k).nonzero().squeeze(1)
            sf = pf.index_select(1, at).sort(dim=1).values
            sr = pr.index_select(1, at).sort(dim=1).values
            total = total + (sf - sr).pow(2).sum()
        return total / pf.numel()


def cross_entropy(logits: Tensor, labels: Tensor, weight: float = 1.0) -> Tensor:
    """Weighted pixel-wise cross-entropy.

    Args:
        logits: (B, K, H, W).
        labels: (B, H, W) long class indices.
        weight: scalar factor (alpha' for real pairs, smaller for synthetic ones).
    """
    return weight * F.cross_entropy(logits, labels.long())


# ---- perceptual loss ----------------------------------------------------------------
class VGG19Features(nn.Module):
    """VGG19 convolutional trunk numbered like torchvision's ``vgg19().features`` (0..36).

    Takes images in [-1, 1], applies ImageNet normalisation and returns the relu1_1 ..
    relu5_1 activations. Parameters are frozen. Random weights until loaded. Pools use
    ``ceil_mode`` so that any side (even 1) works; on even sides this equals torchvision.
    """

    mean: Tensor
    std: Tensor

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in VGG19_CFG:
            if v == "M":
                # ceil_mode: same as torchvision on even sides, and tiny coarse scales work
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU()]
                in_ch = int(v)
        self.features = nn.Sequential(*layers)  # indices 0..36, as in torchvision
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path) -> VGG19Features:
        """Load torchvision's ``vgg19-dcbb9e9d.pth`` (or a ``features``-only state dict).

        Args:
            path: local weights file; keys ``features.N.weight|bias`` or ``N.weight|bias``;
                ``classifier.*`` keys are ignored.
        """
        state = _read_state_dict(path)
        vgg = cls()
        expected = vgg.features.state_dict()
        missing = sorted(set(expected) - set(state), key=_key_order)
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"{path} is not a VGG19 weights file: missing keys {_short(missing)}; "
                f"unexpected keys {_short(unexpected)}"
            )
        bad = [k for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
        if bad:
            raise ValueError(f"{path} is not a VGG19 weights file: wrong shapes for {_short(bad)}")
        vgg.features.load_state_dict(state)
        return vgg

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) in [-1, 1] -> five activation maps relu1_1 .. relu5_1."""
        x = ((x + 1.0) / 2.0 - self.mean) / self.std
        out: list[Tensor] = []
        for i, layer in enumerate(self.features[: VGG19_TAPS[-1] + 1]):
            x = layer(x)
            if i in VGG19_TAPS:
                out.append(x)
        return out


def _read_state_dict(path: str | Path) -> dict[str, Tensor]:
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"VGG19 weights file {path} does not exist") from None
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"cannot read VGG19 weights file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise ValueError(f"{path} is not a state dict of tensors (VGG19 weights expected)")
    state: dict[str, Tensor] = {}
    for key, value in data.items():
        if str(key).startswith("classifier."):
            continue
        state[str(key).removeprefix("features.")] = value
    return state


def _key_order(key: str) -> tuple[int, str]:
    head, _, rest = key.partition(".")
    return (int(head) if head.isdigit() else -1, rest)


def _short(keys: list[str], limit: int = 6) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


class PerceptualLoss(nn.Module):
    """Weighted L1 between VGG19 activations (pix2pixHD): relu1_1..relu5_1, 1/32 .. 1.

    Args:
        vgg: the (loaded, frozen) feature extractor.
    """

    def __init__(self, vgg: VGG19Features) -> None:
        super().__init__()
        self.vgg = vgg

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Loss of image x against target y, both (B, 3, H, W) in [-1, 1]; y is detached."""
        fx, fy = self.vgg(x), self.vgg(y.detach())
        loss = x.new_zeros(())
        for w, a, b in zip(PERCEPTUAL_WEIGHTS, fx, fy, strict=True):
            loss = loss + w * F.l1_loss(a, b)
        return loss


def load_perceptual(path: str | Path | None) -> PerceptualLoss | None:
    """The perceptual loss from a local VGG19 weights file; None (term off) without one.

    Args:
        path: weights file (see :meth:`VGG19Features.from_file`) or None.
    """
    if path is None:
        return None
    return PerceptualLoss(VGG19Features.from_file(path))
