"""The checkpoint format: model metadata, atomic saving, reading a weights file, strict state-dict loading.

Building a network from a weights file lives in model.builder (which imports this module, never the
other way round). Loading is strict: a state dict that does not fit the network is an error that
lists the missing, unexpected and mis-shaped keys, never a silent partial load.
The classifier is dropped on purpose for inference (its class count is that of
the training set), and `num_batches_tracked` buffers absent from old PyTorch
checkpoints are tolerated (they do not affect the function).

Our format (a dict saved with torch.save, readable with weights_only=True):
    {"format": "rga-reid/1", "meta": ModelMeta as a dict, "state_dict": ..., "extra": {...}}
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.errors import CheckpointError
from model.files import atomic_output
from model.spec import DEFAULT_INPUT_SIZE, FEATURE_DIM, VARIANTS

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported inside the functions that read or write weights: ModelMeta is read by the ONNX
# Runtime path, which does without torch.

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "rga-reid/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMBED_FEATURES = ("feat_", "feat")


def code_version() -> str:
    try:
        return importlib.metadata.version("rga-reid")
    except importlib.metadata.PackageNotFoundError:  # not installed (e.g. running from a source tree)
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
    from torch import nn

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
    import torch

    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True, turning every failure into a CheckpointError naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"cannot read weights file {path}: {exc}".split("\n")[0]) from exc


def clean_state_dict(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Strip `module.` (DataParallel) and `_orig_mod.` (torch.compile) prefixes."""
    import torch

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
