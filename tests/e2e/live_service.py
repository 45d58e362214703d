"""The live service the browser tests drive: its data, keys and app, on a free loopback port, seeded through
its HTTP API. The fixtures that start it and the browser are in conftest.py."""

from __future__ import annotations

import io
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-results" / "e2e"
ADMIN_KEY = "dev-admin-key"
INGEST_KEY = "dev-ingest-key"
DAY = datetime(2026, 11, 2, tzinfo=UTC)
CAMERAS = ("entrance", "aisle-3", "checkout")


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    if Path(path).is_file() and os.access(path, os.X_OK):
        return path
    message = f"chromium not found at {path} (apt-get install chromium, or set CHROMIUM_PATH)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def person_image(person: int, variant: int, size: tuple[int, int] = (64, 128)) -> bytes:
    """A PNG of a synthetic 'person': shirt and trouser colours fixed by `person`, noise by `variant`."""
    rng = np.random.default_rng(1000 * person + variant)
    colours = np.random.default_rng(person).integers(0, 256, size=(3, 3))
    width, height = size
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[: height // 5] = colours[0]  # head / hair
    pixels[height // 5 : height // 2] = colours[1]  # shirt
    pixels[height // 2 :] = colours[2]  # trousers
    pixels += rng.normal(0, 12, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class LiveService:
    url: str
    data_dir: Path
    items: list[dict] = field(default_factory=list)

    def client(self, key: str = ADMIN_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key}, timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_app(data_dir: Path):
    """The service app in dev mode on a temporary data dir, with a small random-init embedder."""
    from model.embedder import Embedder
    from service.app import create_app
    from service.settings import Settings

    settings = Settings(
        _env_file=None,
        dev_mode=True,
        data_dir=data_dir,
        device="cpu",
        batch_wait_ms=1,
        retention_days=0,
        # the random network maps every photo close together: only near-identical photos are one visitor
        visitor_threshold=0.9995,
        visitor_horizon_s=3600,
    )
    embedder = Embedder.random_init(variant="none", input_size=(64, 32), device="cpu", batch_size=16)
    return create_app(settings, embedder=embedder)


def seed(service: LiveService) -> list[dict]:
    """Ingest 6 persons seen on the three cameras between 09:00 and 12:00 UTC; returns the stored items."""
    stored = []
    with service.client(INGEST_KEY) as client:
        for person in range(6):
            for step, camera in enumerate(CAMERAS[: 1 + person % 3]):
                at = DAY + timedelta(hours=9, minutes=25 * person + 10 * step)
                files = [
                    (
                        "files",
                        (f"p{person}_{camera}_{v}.png", person_image(person, 10 * step + v), "image/png"),
                    )
                    for v in range(2)
                ]
                response = client.post(
                    "/gallery", files=files, data={"camera_id": camera, "captured_at": at.isoformat()}
                )
                response.raise_for_status()
                stored += [item for item in response.json()["items"] if item["status"] == "created"]
    assert stored, "seeding stored nothing"
    return stored
