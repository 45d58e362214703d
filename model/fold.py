"""BatchNorm folded into the convolution before it, for inference: the same function with fewer passes over memory.

In eval mode a BatchNorm after a convolution is an affine map per output channel,
y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta, so it can be merged into the convolution:
W' = W * s and b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps). The folded network skips one
read and one write of every feature map per BatchNorm (53 in ResNet-50, 7 per RGA module), which matters
most where the convolutions themselves are cheap (bf16 on AMX).

    fast = folded_copy(net)   # a new eval-mode network; `net` is left as it was

The copy is what runs; the original keeps its state dict, so the weights' fingerprint (model.fingerprint:
it hashes the unfolded weights, BatchNorm statistics included) and exports do not change. Folding is
computed in float64 (scale and bias) and stored in the convolution's dtype. The BNNeck (`feat_bn`) is not folded: it has no
convolution before it, and both `feat_` and `feat` are outputs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from model.layers.resnet import Bottleneck
from model.resnet_rga import RGABackbone, RGAReID


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Merge `bn` (eval statistics) into `conv` in place: `conv` gains a bias; `bn` is then to be dropped."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    if conv.out_channels != bn.num_features:
        raise ValueError(f"conv has {conv.out_channels} output channels, BatchNorm {bn.num_features}")
    dtype = conv.weight.dtype
    with torch.no_grad():
        scale = bn.running_var.double().add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        bias = (bias - bn.running_mean.double()) * scale
        if bn.bias is not None:
            bias = bias + bn.bias.double()
        # One rounding per weight (the product in the weights' dtype): float64 here would cost ~0.5 CPU-s of
        # start-up for RGA-SC's ~30M weights and change nothing measurable.
        weight = conv.weight * scale.to(dtype).view(-1, *([1] * (conv.weight.dim() - 1)))
        conv.weight = nn.Parameter(weight, requires_grad=False)
        conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)


def _fold_sequential(seq: nn.Sequential) -> int:
    """Fold every Conv2d directly followed by a BatchNorm2d inside `seq`; the BatchNorm becomes Identity."""
    folded = 0
    names = list(seq._modules)
    for first, second in zip(names, names[1:], strict=False):
        conv, bn = seq._modules[first], seq._modules[second]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            fold_conv_bn(conv, bn)
            seq._modules[second] = nn.Identity()
            folded += 1
    return folded


def fold_batchnorms(net: RGAReID) -> int:
    """Fold, in place, every BatchNorm of an eval-mode RGA network that follows a convolution; how many."""
    if net.training:
        raise ValueError("fold BatchNorms of an eval-mode network only (training would update the statistics)")
    folded = 0
    for module in list(net.modules()):
        if isinstance(module, RGABackbone):
            fold_conv_bn(module.conv1, module.bn1)
            module.bn1 = nn.Identity()
            folded += 1
        elif isinstance(module, Bottleneck):
            for i in (1, 2, 3):
                fold_conv_bn(getattr(module, f"conv{i}"), getattr(module, f"bn{i}"))
                setattr(module, f"bn{i}", nn.Identity())
            folded += 3
        elif isinstance(module, nn.Sequential):
            folded += _fold_sequential(module)
    return folded


def folded_copy(net: RGAReID) -> RGAReID:
    """An eval-mode copy of `net` with its BatchNorms folded into the convolutions (the classifier dropped)."""
    classifier, net.cls = net.cls, None  # not copied: inference never uses it
    try:
        fast = copy.deepcopy(net)
    finally:
        net.cls = classifier
    fast.eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    fold_batchnorms(fast)
    return fast
