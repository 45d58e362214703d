"""Image transforms of the RGA recipe: the training augmentation.

Train, in this order (as the official ``main_imgreid.py`` + ``img_trainers.py``):
  1. ``Random2DTranslation``: with probability p resize to round(1.125 * (H, W)) (288x144 for 256x128) and
     crop (H, W) at a random offset; otherwise resize straight to (H, W). Bilinear.
  2. ``RandomHorizontalFlip`` with p = 0.5.
  3. to float tensor in [0, 1], then normalise with the ImageNet mean/std.
  4. ``RandomErasing`` with p = 0.5 on the normalised tensor: area fraction uniform in [0.02, 0.4], aspect
     (height / width) uniform in [0.3, 3.33] (uniform like the official code; torchvision's samples the
     ratio log-uniformly), fill 0, up to 100 attempts to fit the rectangle inside the image.
Test-time preprocessing (bilinear resize to (H, W), to float, normalise) is the embedder's, written once:
``model.images.resize_to_input`` then ``model.Embedder.preprocess``.

Randomness: each random transform draws from ``generator`` if one is given, else from torch's global RNG,
which ``DataLoader`` seeds differently in each worker (and which ``torch.manual_seed`` makes repeatable).
Give an explicit generator only with ``num_workers=0``: every worker would get a copy of it and draw the
same augmentations. No NumPy or ``random`` state is used.

Inputs: PIL images (RGB) or uint8 image tensors (3, h, w); outputs: float32 tensors (3, H, W).
PIL resizing matches the official ``PIL.Image.resize(..., BILINEAR)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from model.checkpoint import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)



def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(low: int, high_inclusive: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(low, high_inclusive + 1, (), generator=generator))


def _check_probability(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return float(p)


def _check_size(input_size: Sequence[int]) -> tuple[int, int]:
    if len(input_size) != 2 or any(int(s) != s or s < 1 for s in input_size):
        raise ValueError(f"input_size must be (height, width) positive integers, got {input_size!r}")
    return int(input_size[0]), int(input_size[1])


class Random2DTranslation:
    """With probability ``p``: resize to ``round(scale * (H, W))`` and crop (H, W) at a random offset;
    otherwise resize to (H, W). Input: PIL image or image tensor; output: the same kind, size (H, W)."""

    def __init__(
        self,
        size: Sequence[int],
        p: float = 0.5,
        scale: float = 1.125,
        generator: torch.Generator | None = None,
    ) -> None:
        self.height, self.width = _check_size(size)
        self.p = _check_probability("translation probability", p)
        if scale < 1.0:
            raise ValueError(f"translation scale must be >= 1, got {scale}")
        self.scale = scale
        self.generator = generator

    def __call__(self, image: Any) -> Any:
        if float(torch.rand((), generator=self.generator)) >= self.p:
            return TF.resize(image, [self.height, self.width], antialias=True)
        big_h, big_w = round(self.height * self.scale), round(self.width * self.scale)
        enlarged = TF.resize(image, [big_h, big_w], antialias=True)
        # offsets rounded from a continuous uniform draw, as the official code does
        left = round(_uniform(0.0, big_w - self.width, self.generator))
        top = round(_uniform(0.0, big_h - self.height, self.generator))
        return TF.crop(enlarged, top, left, self.height, self.width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size=({self.height}, {self.width}), p={self.p}, scale={self.scale})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p`` (PIL image or tensor in, same kind out)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        self.p = _check_probability("flip probability", p)
        self.generator = generator

    def __call__(self, image: Any) -> Any:
        if float(torch.rand((), generator=self.generator)) < self.p:
            return TF.horizontal_flip(image)
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomErasing:
    """Random Erasing (Zhong et al. 2017) on a (C, H, W) float tensor; returns a new tensor.

    With probability ``p`` tries up to ``max_attempts`` rectangles of area ``uniform(area) * H * W`` and
    aspect (h / w) ``uniform(aspect)``; the first that fits strictly inside the image is set to ``value``.
    """

    def __init__(
        self,
        p: float = 0.5,
        area: tuple[float, float] = (0.02, 0.4),
        aspect: tuple[float, float] = (0.3, 3.33),
        value: float = 0.0,
        max_attempts: int = 100,
        generator: torch.Generator | None = None,
    ) -> None:
        self.p = _check_probability("erasing probability", p)
        if not 0.0 < area[0] <= area[1] <= 1.0:
            raise ValueError(f"erasing area must satisfy 0 < low <= high <= 1, got {area}")
        if not 0.0 < aspect[0] <= aspect[1]:
            raise ValueError(f"erasing aspect must satisfy 0 < low <= high, got {aspect}")
        self.area = (float(area[0]), float(area[1]))
        self.aspect = (float(aspect[0]), float(aspect[1]))
        self.value = float(value)
        self.max_attempts = max_attempts
        self.generator = generator

    def __call__(self, tensor: Tensor) -> Tensor:
        if not isinstance(tensor, Tensor) or tensor.ndim != 3:
            raise ValueError("RandomErasing expects a (C, H, W) tensor; put it after ToDtype/Normalize")
        if float(torch.rand((), generator=self.generator)) >= self.p:
            return tensor
        _, height, width = tensor.shape
        for _ in range(self.max_attempts):
            target_area = _uniform(*self.area, self.generator) * height * width
            aspect = _uniform(*self.aspect, self.generator)
            h = round(math.sqrt(target_area * aspect))
            w = round(math.sqrt(target_area / aspect))
            if 0 < h < height and 0 < w < width:
                top = _randint(0, height - h, self.generator)
                left = _randint(0, width - w, self.generator)
                erased = tensor.clone()
                erased[:, top : top + h, left : left + w] = self.value
                return erased
        return tensor

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(p={self.p}, area={self.area}, aspect={self.aspect}, value={self.value})"
        )


def _to_normalised_tensor(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got {tuple(mean)} and {tuple(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be > 0, got {tuple(std)}")
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def build_train_transform(
    input_size: Sequence[int] = (256, 128),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    translate_p: float = 0.5,
    flip_p: float = 0.5,
    erasing_p: float = 0.5,
    erasing_area: tuple[float, float] = (0.02, 0.4),
    erasing_aspect: tuple[float, float] = (0.3, 3.33),
    generator: torch.Generator | None = None,
) -> v2.Compose:
    """Training augmentation: PIL image / uint8 (3, h, w) tensor -> float32 (3, H, W), (H, W) = input_size."""
    size = _check_size(input_size)
    return v2.Compose(
        [
            Random2DTranslation(size, p=translate_p, generator=generator),
            RandomHorizontalFlip(flip_p, generator=generator),
            *_to_normalised_tensor(mean, std),
            RandomErasing(
                erasing_p, area=erasing_area, aspect=erasing_aspect, value=0.0, generator=generator
            ),
        ]
    )
