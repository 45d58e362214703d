"""ResNet-50's stem and stages (bottleneck blocks), written here so that inference does not import torchvision.

`import torchvision` costs about 3.5 CPU-seconds on the 2-core build machine (its package imports
torch._dynamo through torchvision.ops), more than ONNX Runtime needs to load and optimise the whole network;
`reid embed` paid it on every run for one constructor. This module builds the same ResNet-50 as
`torchvision.models.resnet50(weights=None)`: the same module names (`layer3.5.bn2`, `layer4.0.downsample.0`),
so torchvision ImageNet weights and official RGA checkpoints load without renaming, and the same random
initialisation draw for draw (every module created and initialised in torchvision's order, its unused `fc`
included), so a seeded network has the same weights as before this module existed.
tests/model/test_resnet_layers.py compares both, weights and outputs.
"""

from __future__ import annotations

import torch
from torch import nn

EXPANSION = 4
STAGE_PLANES = (64, 128, 256, 512)
STAGE_BLOCKS = (3, 4, 6, 3)  # ResNet-50


def _conv1x1(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)


def _conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, as torchvision's "ResNet v1.5") -> 1x1 with a residual connection."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        # Attribute order = registration order = initialisation order: keep torchvision's.
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * EXPANSION)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50Stages(nn.Module):
    """ResNet-50 without its pooling and classifier: `conv1 bn1 relu maxpool layer1..layer4`.

    last_stride: stride of layer4 (1 for re-ID, as the official RGA code; torchvision's is 2).
    """

    def __init__(self, last_stride: int = 2) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        strides = (1, 2, 2, last_stride)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            self._make_stage(planes, blocks, stride)
            for planes, blocks, stride in zip(STAGE_PLANES, STAGE_BLOCKS, strides, strict=True)
        )
        # torchvision creates its 1000-class `fc` here; its default initialisation draws from the random
        # generator, and the draws below (and every module built after this one) depend on that. Created to
        # keep the sequence, then dropped: the re-ID head is not ImageNet's.
        nn.Linear(512 * EXPANSION, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * EXPANSION:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * EXPANSION, stride), nn.BatchNorm2d(planes * EXPANSION)
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * EXPANSION
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)
