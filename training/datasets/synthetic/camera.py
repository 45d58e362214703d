"""What each synthetic camera does to a picture: background, illumination and colour cast, the
viewpoints it sees people from, person scale, blur, resolution, noise and partial occlusion."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

RGB = tuple[int, int, int]
VIEWS = ("front", "back", "side")
BACKGROUND_MARGIN = 48  # the background texture is this much larger than a crop on each axis


@dataclass(frozen=True)
class CameraLook:
    """One camera's rendering parameters (camid 0-based)."""

    camid: int
    wall: RGB
    floor: RGB
    accent: RGB
    horizon: float  # fraction of the crop height where the wall meets the floor
    tile: int  # floor tile size in pixels
    texture_seed: int
    gain: float  # overall brightness
    cast: tuple[float, float, float]  # per-channel multipliers
    gamma: float
    view_weights: tuple[float, float, float]  # P(front), P(back), P(side)
    person_scale: tuple[float, float]  # person height as a fraction of the crop height
    blur: float  # Gaussian sigma in pixels
    resolution: float  # < 1: the camera sees fewer pixels, upsampled to the crop size
    noise: float  # sensor noise sigma, 0..255 scale
    occlusion: float  # probability that something stands between camera and person
    occluder: RGB


def _colour(rng: np.random.Generator, low: int, high: int) -> RGB:
    return tuple(int(v) for v in rng.integers(low, high, 3))  # type: ignore[return-value]


@lru_cache(maxsize=64)
def camera_look(seed: int, camid: int) -> CameraLook:
    """The look of camera `camid` (0-based) in the dataset made with `seed`."""
    rng = np.random.default_rng([seed, 2, camid])
    dominant = int(rng.integers(3))
    weights = np.full(3, 0.2)
    weights[dominant] = 0.6
    low_scale = float(rng.uniform(0.72, 0.88))
    return CameraLook(
        camid=camid,
        wall=_colour(rng, 60, 220),
        floor=_colour(rng, 50, 180),
        accent=_colour(rng, 20, 240),
        horizon=float(rng.uniform(0.35, 0.7)),
        tile=int(rng.integers(6, 20)),
        texture_seed=int(rng.integers(2**31)),
        gain=float(rng.uniform(0.7, 1.2)),
        cast=tuple(float(c) for c in rng.uniform(0.84, 1.16, 3)),  # type: ignore[arg-type]
        gamma=float(rng.uniform(0.85, 1.2)),
        view_weights=tuple(float(w) for w in weights),  # type: ignore[arg-type]
        person_scale=(low_scale, min(0.97, low_scale + float(rng.uniform(0.06, 0.14)))),
        blur=float(rng.choice([0.0, 0.4, 0.7, 1.0])),
        resolution=float(rng.choice([1.0, 1.0, 0.75, 0.6])),
        noise=float(rng.uniform(1.5, 6.0)),
        occlusion=float(rng.uniform(0.0, 0.3)),
        occluder=_colour(rng, 30, 200),
    )


@lru_cache(maxsize=64)
def camera_background(camera: CameraLook, height: int, width: int) -> np.ndarray:
    """The camera's scene, larger than one crop, as the camera sees it (toned): (height + margin,
    width + margin, 3) float32.

    Crops at different offsets give each image of the camera a different but consistent background.
    """
    rng = np.random.default_rng(camera.texture_seed)
    big_h, big_w = height + BACKGROUND_MARGIN, width + BACKGROUND_MARGIN
    ys = np.arange(big_h, dtype=np.float32)[:, None]
    xs = np.arange(big_w, dtype=np.float32)[None, :]
    horizon = int(camera.horizon * big_h)
    scene = np.empty((big_h, big_w, 3), np.float32)
    # wall: vertical gradient, with pillars / shelves / doors in the accent colour
    wall = np.asarray(camera.wall, np.float32) * (0.85 + 0.3 * ys[:horizon] / max(horizon, 1))[..., None]
    scene[:horizon] = wall
    for _ in range(int(rng.integers(2, 5))):
        x0 = int(rng.integers(0, big_w - 4))
        x1 = x0 + int(rng.integers(3, 16))
        shade = float(rng.uniform(0.6, 1.3))
        scene[:horizon, x0:x1] = np.clip(np.asarray(camera.accent, np.float32) * shade, 0, 255)
    if rng.random() < 0.6:  # a horizontal band: shelf edge, window sill or signage
        y0 = int(rng.integers(0, max(horizon - 4, 1)))
        scene[y0 : y0 + int(rng.integers(2, 6)), :] = np.asarray(camera.accent, np.float32) * 0.7
    # floor: tiles with darker grout lines
    floor = np.broadcast_to(np.asarray(camera.floor, np.float32), (big_h - horizon, big_w, 3)).copy()
    grout = ((ys[horizon:] % camera.tile) < 1) | ((xs % camera.tile) < 1)
    floor[grout] *= 0.75
    scene[horizon:] = floor
    # low-frequency lighting variation across the scene
    blotches = rng.uniform(-22, 22, (6, 4)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(blotches, mode="F").resize((big_w, big_h), Image.BILINEAR))
    scene += smooth[..., None]
    return tone(camera, np.clip(scene, 0, 255))


def tone(camera: CameraLook, rgb: np.ndarray) -> np.ndarray:
    """Apply the camera's gamma, brightness and colour cast to colours (..., 3) float 0..255 (not clipped)."""
    rgb = np.asarray(rgb, np.float32)
    return (
        255.0 * (rgb / 255.0) ** camera.gamma * (camera.gain * np.asarray(camera.cast, np.float32))
    ).astype(np.float32)
