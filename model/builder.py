"""Building the network and loading weights into it (as timm's _builder.py): the one place that does both.

    net = build_model("rgasc", num_classes=751, backbone_weights="resnet50-19c8e357.pth")  # training
    net, meta = load_checkpoint("runs/market1501/final.pt")                             # inference

Architecture files (model.resnet_rga, model.layers) define layers only and never import this module;
the checkpoint format (model.checkpoint) knows nothing of how a network is built.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from model.checkpoint import (
    CHECKPOINT_FORMAT,
    ModelMeta,
    clean_state_dict,
    load_state_dict_strict,
    read_checkpoint_file,
)
from model.errors import CheckpointError
from model.resnet_rga import DEFAULT_INPUT_SIZE, RGAReID

logger = logging.getLogger(__name__)


def build_model(
    variant: str = "rgasc",
    num_classes: int = 0,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    ratios: tuple[int, int, int] = (8, 8, 8),
    backbone_weights: str | os.PathLike | None = None,
) -> RGAReID:
    """Build the network; `backbone_weights` is a torchvision ResNet-50 ImageNet state-dict file.

    Nothing is downloaded: without `backbone_weights` the backbone keeps its random initialisation.
    """
    net = RGAReID(variant, num_classes, input_size, ratios)
    if backbone_weights is not None:
        load_backbone_weights(net, backbone_weights)
    return net


def _infer_official_meta(
    state_dict: Mapping[str, torch.Tensor], input_size: tuple[int, int] | None
) -> ModelMeta:
    """Variant, input size, ratios and class count from the shapes in an official RGA state dict."""
    spatial = "backbone.rga_att1.theta_spatial.0.weight" in state_dict
    channel = "backbone.rga_att1.theta_channel.0.weight" in state_dict
    variant = {(True, True): "rgasc", (True, False): "rgas", (False, True): "rgac", (False, False): "none"}[
        (spatial, channel)
    ]
    if "backbone.conv1.weight" not in state_dict or "feat_bn.weight" not in state_dict:
        raise CheckpointError(
            "not an RGA re-ID state dict: expected keys such as 'backbone.conv1.weight' and 'feat_bn.weight'"
        )
    ratios = (8, 8, 8)
    positions = None  # N of the first stage's feature map
    if spatial:
        inter_c, c = state_dict["backbone.rga_att1.theta_spatial.0.weight"].shape[:2]
        gg = state_dict["backbone.rga_att1.gg_spatial.0.weight"]
        positions = gg.shape[1] // 2
        w_in = state_dict["backbone.rga_att1.W_spatial.0.weight"].shape
        ratios = (c // inter_c, positions // gg.shape[0], w_in[1] // w_in[0])
    elif channel:
        inter_n, n = state_dict["backbone.rga_att1.theta_channel.0.weight"].shape[:2]
        gg = state_dict["backbone.rga_att1.gg_channel.0.weight"]
        positions = n
        w_in = state_dict["backbone.rga_att1.W_channel.0.weight"].shape
        ratios = (gg.shape[1] // 2 // gg.shape[0], n // inter_n, w_in[1] // w_in[0])
    if input_size is None:
        input_size = DEFAULT_INPUT_SIZE
        if positions is not None and positions != (input_size[0] // 4) * (input_size[1] // 4):
            # Re-ID crops are 2:1 (H:W); recover H*W = 16 N under that aspect.
            width = int(round(math.sqrt(16 * positions / 2)))
            if 2 * width * width != 16 * positions:
                raise CheckpointError(
                    f"cannot infer the input size of these weights (first RGA stage has {positions} "
                    "positions); pass input_size explicitly"
                )
            input_size = (2 * width, width)
    cls = state_dict.get("cls.weight")
    return ModelMeta(
        variant=variant,
        input_size=input_size,
        num_classes=int(cls.shape[0]) if cls is not None else 0,
        ratios=ratios,
        source="official-rga",
    )


def load_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    for_inference: bool = True,
    input_size: tuple[int, int] | None = None,
) -> tuple[RGAReID, ModelMeta]:
    """Build the network described by a weights file and load it strictly.

    Reads our format and checkpoints written by the official RGA code
    (`checkpoint_600.pth.tar`: {"state_dict", "epoch", ...}, or a bare state dict).
    With `for_inference` the classifier is dropped and the network is returned in eval mode.
    """
    path = Path(path)
    obj = read_checkpoint_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a checkpoint dict (got {type(obj).__name__})")
    if obj.get("format") == CHECKPOINT_FORMAT:
        meta = ModelMeta.from_dict(obj.get("meta") or {})
        state_dict = clean_state_dict(obj["state_dict"])
    elif isinstance(obj.get("format"), str):
        raise CheckpointError(
            f"{path} has checkpoint format {obj['format']!r}; this code reads {CHECKPOINT_FORMAT!r}"
        )
    else:
        raw = obj.get("state_dict", obj)
        if not isinstance(raw, Mapping):
            raise CheckpointError(f"{path}: 'state_dict' is not a mapping")
        state_dict = clean_state_dict(raw)
        meta = _infer_official_meta(state_dict, input_size)
        if isinstance(obj.get("epoch"), int):
            meta.epoch = obj["epoch"]
    if input_size is not None and tuple(input_size) != tuple(meta.input_size):
        raise CheckpointError(
            f"{path} was built for input {meta.input_size[0]}x{meta.input_size[1]}, not {input_size[0]}x{input_size[1]}"
        )
    if for_inference:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("cls.")}
        meta = dataclasses.replace(meta, num_classes=0)
    try:
        net = RGAReID(meta.variant, meta.num_classes, meta.input_size, meta.ratios)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    load_state_dict_strict(net, state_dict, str(path))
    net.to(device)
    if for_inference:
        net.eval()
    return net, meta


def load_backbone_weights(net: RGAReID, path: str | os.PathLike) -> None:
    """Initialise the ResNet-50 stem and stages from a torchvision ImageNet state-dict file.

    Accepts `resnet50-19c8e357.pth` (the official recipe's file) or a newer torchvision
    ResNet-50 file. The ImageNet classifier (`fc.*`) is ignored; every other backbone
    tensor must be present with the right shape. Nothing is downloaded.
    """
    path = Path(path)
    obj = read_checkpoint_file(path)
    raw = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path} does not hold a ResNet-50 state dict")
    state_dict = {k: v for k, v in clean_state_dict(raw).items() if not k.startswith("fc.")}
    target = nn.ModuleDict(
        {
            name: getattr(net.backbone, name)
            for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
        }
    )
    load_state_dict_strict(target, state_dict, f"{path} (torchvision ResNet-50)")
    logger.info("initialised the backbone from %s", path)
