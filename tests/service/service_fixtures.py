"""Helpers for the service tests (imported by the test modules; the fixtures are in conftest.py).

API keys of the dev-mode roles, settings for a test app in tmp_path, synthetic person images and
upload / ingest request builders.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from service.settings import Settings

ADMIN = {"X-API-Key": "dev-admin-key"}
SEARCH = {"X-API-Key": "dev-search-key"}
INGEST = {"X-API-Key": "dev-ingest-key"}


def make_settings(tmp_path, **overrides) -> Settings:
    values = dict(
        dev_mode=True,
        data_dir=tmp_path / "data",
        batch_wait_ms=2,
        retention_days=0,
        visitor_threshold=0.9995,
        visitor_horizon_s=3600,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


def person_png(colour_top, colour_bottom, seed: int = 0, size=(32, 64), fmt="PNG") -> bytes:
    """A synthetic 'person': two colour blocks (shirt, trousers) with a little noise; distinct per seed."""
    w, h = size
    rng = np.random.default_rng(seed)
    pixels = np.zeros((h, w, 3), dtype=np.float32)
    pixels[: h // 2] = colour_top
    pixels[h // 2 :] = colour_bottom
    pixels += rng.normal(0, 6, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# Colour patterns a random network tells apart (same pattern >= 0.9999 cosine, different <= 0.999).
PATTERNS = [
    ((220, 30, 30), (30, 30, 220)),
    ((30, 200, 30), (240, 240, 240)),
    ((20, 20, 20), (230, 200, 40)),
    ((240, 240, 240), (20, 20, 20)),
    ((200, 100, 0), (0, 120, 120)),
    ((120, 0, 160), (160, 160, 160)),
]


def identity_image(identity: int, shot: int, fmt: str = "PNG") -> bytes:
    top, bottom = PATTERNS[identity]
    return person_png(top, bottom, seed=1000 * identity + shot, fmt=fmt)


def upload(images: list[bytes], names: list[str] | None = None, mime: str = "image/png") -> list[tuple]:
    names = names or [f"img{i}.png" for i in range(len(images))]
    return [("files", (name, data, mime)) for name, data in zip(names, images, strict=True)]


def ingest(client, images, camera_id="cam-1", captured_at="2026-11-20T10:00:00Z", headers=INGEST, **fields):
    data = {"camera_id": camera_id, "captured_at": captured_at, **fields}
    return client.post("/gallery", files=upload(images), data=data, headers=headers)


def run_async(coro_fn):
    """asyncio.run in its own thread: other suites (Playwright's sync API) may leave a loop running here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()
