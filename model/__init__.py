"""The RGA-SC re-ID network, its weights, and batched embedding."""

from model.builder import build_model, load_backbone_weights, load_checkpoint
from model.checkpoint import (
    CHECKPOINT_FORMAT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelMeta,
    save_checkpoint,
)
from model.embedder import Embedder
from model.errors import CheckpointError, ImageDecodeError, InputSizeError, ReidError
from model.layers.rga import RGAModule
from model.resnet_rga import VARIANTS, ReIDOutput, RGAReID

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
