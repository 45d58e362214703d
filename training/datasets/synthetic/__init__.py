"""A procedural re-ID dataset in the Market-1501 layout, so everything runs without downloads.

from training.datasets.synthetic import SyntheticConfig, generate, render_identity_image
generate(SyntheticConfig.from_preset("small", seed=1), "data/synthetic-small")
pixels = render_identity_image(pid=3, camid=1, seed=1, index=0)   # (128, 64, 3) uint8
"""

from training.datasets.synthetic.appearance import IdentityLook, identity_look
from training.datasets.synthetic.camera import CameraLook, camera_look
from training.datasets.synthetic.config import PRESETS, SyntheticConfig
from training.datasets.synthetic.generate import GenerationResult, generate
from training.datasets.synthetic.reader import read_synthetic, read_timestamps
from training.datasets.synthetic.render import encode_jpeg, render_crop, render_identity_image

__all__ = [
    "PRESETS",
    "CameraLook",
    "GenerationResult",
    "IdentityLook",
    "SyntheticConfig",
    "camera_look",
    "encode_jpeg",
    "generate",
    "identity_look",
    "read_synthetic",
    "read_timestamps",
    "render_crop",
    "render_identity_image",
]
