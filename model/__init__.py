"""The RGA-SC network, its weights, and batched embedding.

Names are imported on first use (PEP 562), not with the package: `model.errors`, `model.images` or an ONNX
Runtime embedder must not pay for torch's import (about 3 CPU-seconds on the 2-core build machine) just
because they live in this package. `from model import Embedder` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {
    "build_model": "model.builder",
    "load_backbone_weights": "model.builder",
    "load_checkpoint": "model.builder",
    "CHECKPOINT_FORMAT": "model.checkpoint",
    "IMAGENET_MEAN": "model.checkpoint",
    "IMAGENET_STD": "model.checkpoint",
    "ModelMeta": "model.checkpoint",
    "save_checkpoint": "model.checkpoint",
    "Embedder": "model.embedder",
    "CheckpointError": "model.errors",
    "ImageDecodeError": "model.errors",
    "InputSizeError": "model.errors",
    "ReidError": "model.errors",
    "RGAModule": "model.layers.rga",
    "VARIANTS": "model.resnet_rga",
    "ReIDOutput": "model.resnet_rga",
    "RGAReID": "model.resnet_rga",
}

__all__ = [
    "CHECKPOINT_FORMAT",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VARIANTS",
    "CheckpointError",
    "Embedder",
    "ImageDecodeError",
    "InputSizeError",
    "ModelMeta",
    "RGAModule",
    "RGAReID",
    "ReIDOutput",
    "ReidError",
    "build_model",
    "load_backbone_weights",
    "load_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


if TYPE_CHECKING:  # for type checkers and editors: the eager imports these names stand for
    from model.builder import build_model, load_backbone_weights, load_checkpoint
    from model.checkpoint import CHECKPOINT_FORMAT, IMAGENET_MEAN, IMAGENET_STD, ModelMeta, save_checkpoint
    from model.embedder import Embedder
    from model.errors import CheckpointError, ImageDecodeError, InputSizeError, ReidError
    from model.layers.rga import RGAModule
    from model.resnet_rga import VARIANTS, ReIDOutput, RGAReID
