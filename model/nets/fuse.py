"""Inference-only rewrites that keep the function and cut memory passes.

BatchNorm (eval) folds into the preceding convolution, LeakyReLU runs in place and the
weights go to channels-last, which oneDNN (CPU) and cuDNN run markedly faster. Outputs
match the unfused network to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from model.nets.blocks import ConvBlock


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv whose output equals ``bn(conv(x))`` with the BN's running statistics."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.to(conv.weight.device)


@torch.no_grad()
def fuse_for_inference(module: nn.Module, channels_last: bool = True) -> nn.Module:
    """Fold BN into convs inside every ConvBlock, in-place activations, channels-last weights."""
    module.eval()
    for block in module.modules():
        if isinstance(block, ConvBlock) and isinstance(block[1], nn.BatchNorm2d):
            block[0] = fold_batchnorm(block[0], block[1])
            block[1] = nn.Identity()
        if isinstance(block, nn.LeakyReLU):
            block.inplace = True
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return module
