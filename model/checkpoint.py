"""Weights in and out: our checkpoint format, official RGA checkpoints, torchvision ImageNet backbones.

Loading is strict: a state dict that does not fit the network is an error that
lists the missing, unexpected and mis-shaped keys, never a silent partial load.
The classifier is dropped on purpose for inference (its class count is that of
the training set), and `num_batches_tracked` buffers absent from old PyTorch
checkpoints are tolerated (they do not affect the function).

Our format (a dict saved with torch.save, readable with weights_only=True):
    {"format": "rga-reid/1", "meta": ModelMeta as a dict, "state_dict": ..., "extra": {...}}
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.errors import CheckpointError
from model.resnet_rga import DEFAULT_INPUT_SIZE, FEATURE_DIM, VARIANTS, RGAReID

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "rga-reid/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMBED_FEATURES = ("feat_", "feat")


def code_version() -> str:
    try:
        from importlib.metadata import version

        return version("rga-reid")
    except Exception:  # not installed (e.g. running from a source tree)
        return "unknown"


@dataclass
class ModelMeta:
    """What inference needs to use a set of weights, and where they came from."""

    variant: str = "rgasc"
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE  # (H, W)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    feature_dim: int = FEATURE_DIM
    embed_feature: str = "feat_"  # which output the embedder uses: "feat_" (pooled) or "feat" (BNNeck)
    num_classes: int = 0
    ratios: tuple[int, int, int] = (8, 8, 8)
    dataset: str | None = None
    epoch: int | None = None
    code_version: str = field(default_factory=code_version)
    source: str = "rga-reid"  # "rga-reid", "official-rga" or "random-init"

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.ratios = tuple(int(v) for v in self.ratios)
        if self.variant not in VARIANTS:
            raise CheckpointError(f"unknown variant {self.variant!r} in model metadata")
        if self.embed_feature not in EMBED_FEATURES:
            raise CheckpointError(
                f"embed_feature must be one of {EMBED_FEATURES}, got {self.embed_feature!r}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise CheckpointError(f"bad normalisation mean/std {self.mean}/{self.std}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("input_size", "mean", "std", "ratios"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMeta:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("ignoring unknown model metadata fields: %s", ", ".join(unknown))
        return cls(**{k: v for k, v in data.items() if k in known})


def _unwrap(net: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(net, "_orig_mod"):
            net = net._orig_mod
        elif isinstance(net, nn.parallel.DistributedDataParallel | nn.DataParallel):
            net = net.module
        else:
            return net


def save_checkpoint(
    path: str | os.PathLike, net: nn.Module, meta: ModelMeta, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write our checkpoint format atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "meta": meta.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in _unwrap(net).state_dict().items()},
        "extra": dict(extra or {}),
    }
    atomic_torch_save(payload, path)
    return path


def atomic_torch_save(payload: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside `path`, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True, turning every failure into a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"cannot read weights file {path}: {exc}".split("\n")[0]) from exc


def clean_state_dict(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Strip `module.` (DataParallel) and `_orig_mod.` (torch.compile) prefixes."""
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"state dict entry {key!r} is not a tensor")
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    return cleaned


def load_state_dict_strict(net: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load every parameter and buffer, or raise a CheckpointError listing what does not fit."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        lines = [f"weights in {source} do not fit the network:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                lines.append(f"  {title} ({len(keys)}): {shown}")
        raise CheckpointError("\n".join(lines))
    full = dict(state_dict)
    for k, v in expected.items():
        if k not in full:  # num_batches_tracked absent from old checkpoints
            full[k] = v
    net.load_state_dict(full, strict=True)


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
