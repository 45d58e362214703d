"""What the network is, as plain constants (no torch): variants, default input size, feature dimension.

Kept apart from model.resnet_rga so that metadata, configuration checks and the ONNX Runtime path can
read them without importing torch.
"""

from __future__ import annotations

VARIANTS = ("rgasc", "rgas", "rgac", "none")
DEFAULT_INPUT_SIZE = (256, 128)
FEATURE_DIM = 2048
STAGE_CHANNELS = (256, 512, 1024, 2048)
STAGE_STRIDES = (4, 8, 16, 16)  # with last stride 1
