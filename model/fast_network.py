"""The network the Embedder runs for inference: a BatchNorm-folded copy, in bf16 weights on the CPU when asked.

    forward, bf16_weights = inference_network(net, precision, device)

- fp32 (any device) and bf16 on CUDA: `model.fold.folded_copy(net)`, run under the Embedder's autocast
  as before.
- bf16 on the CPU: the folded copy's backbone is stored in bfloat16 and `Bf16Network` casts the input
  once and runs it without autocast. Autocast would convert every convolution's fp32 weights to bf16 on
  every call (ResNet-50 + RGA: ~100 MB read and ~50 MB written per forward, about a fifth of a batch of
  16's time on the 2-core build machine); here they are converted once. The head (global pooling and the
  BNNeck) runs in float32 on the bf16 feature map, where autocast pooled in bf16.

`net` is not modified. Vectors: fp32 folded against unfolded cosine >= 0.9999 (tests/model/test_fold.py);
bf16 keeps the fp32 fingerprint as autocast bf16 always has (docs/onnx.md).
"""

from __future__ import annotations

import torch
from torch import nn

from model.fold import folded_copy
from model.resnet_rga import ReIDOutput, RGAReID


class Bf16Network(nn.Module):
    """A folded RGA network whose backbone runs in bfloat16 weights; its outputs are float32."""

    def __init__(self, net: RGAReID) -> None:
        super().__init__()
        self.net = net
        self.net.backbone.to(torch.bfloat16)
        self.input_size = net.input_size

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        feature_map = self.net.forward_features(x.to(torch.bfloat16))
        return self.net.forward_head(feature_map.float())


def inference_network(net: RGAReID, precision: str, device: torch.device) -> tuple[nn.Module, bool]:
    """(the module to run, whether it holds bf16 weights and must run without autocast)."""
    fast = folded_copy(net)
    if precision == "bf16" and device.type == "cpu":
        return Bf16Network(fast), True
    return fast, False
