"""ResNet-50 (last stride 1) with an RGA module after each stage, and the BNNeck re-ID head.

The backbone is ResNet-50 (model.layers.resnet: torchvision's, module for module and
draw for draw, without importing torchvision) with the last stage's stride set to 1, its
stem and stages kept under the names the official RGA code uses (`backbone.conv1`, `backbone.layer3.5.bn2`,
`backbone.rga_att1...`), so official checkpoints and torchvision ImageNet weights
load without renaming.

Head: global average pool -> `feat_` (2048) -> BatchNorm1d with a frozen bias
(BNNeck) -> `feat` -> bias-free linear classifier (when built with classes).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from model.errors import InputSizeError
from model.layers.resnet import ResNet50Stages
from model.layers.rga import RGAForm, RGAModule
from model.spec import DEFAULT_INPUT_SIZE, FEATURE_DIM, STAGE_CHANNELS, STAGE_STRIDES, VARIANTS

__all__ = ["DEFAULT_INPUT_SIZE", "FEATURE_DIM", "VARIANTS", "RGABackbone", "RGAReID", "ReIDOutput"]


class ReIDOutput(NamedTuple):
    """What the network returns: pooled feature, BNNeck feature, and logits (None without a classifier)."""

    feat_: torch.Tensor  # (B, 2048) globally pooled backbone feature
    feat: torch.Tensor  # (B, 2048) after the BNNeck
    logits: torch.Tensor | None  # (B, num_classes)


def _attention_flags(variant: str) -> tuple[bool, bool]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant in ("rgasc", "rgas"), variant in ("rgasc", "rgac")


class RGABackbone(nn.Module):
    """ResNet-50 stem and stages with last stride 1, an RGA module after each stage."""

    def __init__(
        self,
        variant: str = "rgasc",
        input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
        ratios: tuple[int, int, int] = (8, 8, 8),
        form: RGAForm = "fast",
    ) -> None:
        super().__init__()
        use_spatial, use_channel = _attention_flags(variant)
        height, width = input_size
        resnet = ResNet50Stages(last_stride=1)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            resnet.layer1,
            resnet.layer2,
            resnet.layer3,
            resnet.layer4,
        )
        cha_ratio, spa_ratio, down_ratio = ratios
        for stage, (channels, stride) in enumerate(zip(STAGE_CHANNELS, STAGE_STRIDES, strict=True), 1):
            if variant == "none":
                att: nn.Module = nn.Identity()
            else:
                att = RGAModule(
                    channels,
                    (height // stride) * (width // stride),
                    use_spatial=use_spatial,
                    use_channel=use_channel,
                    cha_ratio=cha_ratio,
                    spa_ratio=spa_ratio,
                    down_ratio=down_ratio,
                    form=form,
                )
            setattr(self, f"rga_att{stage}", att)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.rga_att1(self.layer1(x))
        x = self.rga_att2(self.layer2(x))
        x = self.rga_att3(self.layer3(x))
        return self.rga_att4(self.layer4(x))


class RGAReID(nn.Module):
    """The re-ID network: RGA backbone + BNNeck head (+ classifier for training).

    Args:
        variant: "rgasc" (spatial then channel), "rgas", "rgac", or "none" (plain ResNet-50, last stride 1).
        num_classes: training identities; 0 builds no classifier (inference).
        input_size: (H, W) the network is built for; part of the model (the channel
            attention's weights depend on H*W). Other sizes are refused.
        ratios: (channel, spatial, down) reduction ratios of the RGA modules.
    """

    def __init__(
        self,
        variant: str = "rgasc",
        num_classes: int = 0,
        input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
        ratios: tuple[int, int, int] = (8, 8, 8),
    ) -> None:
        super().__init__()
        height, width = input_size
        if height <= 0 or width <= 0 or height % 16 or width % 16:
            raise ValueError(f"input size must be positive multiples of 16, got {height}x{width}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.variant = variant
        self.input_size = (int(height), int(width))
        self.ratios = tuple(ratios)
        self.num_classes = num_classes
        self.backbone = RGABackbone(variant, self.input_size, self.ratios)
        self.feat_bn = nn.BatchNorm1d(FEATURE_DIM)
        self.feat_bn.bias.requires_grad_(False)
        nn.init.ones_(self.feat_bn.weight)
        nn.init.zeros_(self.feat_bn.bias)
        self.cls: nn.Linear | None = None
        if num_classes > 0:
            self.cls = nn.Linear(FEATURE_DIM, num_classes, bias=False)
            nn.init.normal_(self.cls.weight, std=0.001)

    @property
    def feature_dim(self) -> int:
        return FEATURE_DIM

    def rga_modules(self) -> list[RGAModule]:
        return [m for m in self.modules() if isinstance(m, RGAModule)]

    def set_rga_form(self, form: RGAForm) -> RGAReID:
        """Switch every RGA module between the fast and the direct (paper) computation."""
        if form not in ("fast", "direct"):
            raise ValueError(f"unknown RGA form {form!r}")
        for module in self.rga_modules():
            module.form = form
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, 2048, H/16, W/16) feature map."""
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != self.input_size:
            raise InputSizeError(
                f"this network was built for (B, 3, {self.input_size[0]}, {self.input_size[1]}) input, "
                f"got {tuple(x.shape)}; resize the images (the embedder does) or build the network for that size"
            )
        return self.backbone(x)

    def forward_head(self, feature_map: torch.Tensor) -> ReIDOutput:
        feat_ = feature_map.mean(dim=(2, 3))
        feat = self.feat_bn(feat_)
        logits = self.cls(feat) if self.cls is not None else None
        return ReIDOutput(feat_, feat, logits)

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        return self.forward_head(self.forward_features(x))

