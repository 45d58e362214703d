"""Fixtures: one small rendered store video set per session (2 cameras x 16 s of 384x288 at 10 fps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("cv2")
pytest.importorskip("supervision")

START = "2024-06-03T10:00:00+00:00"


@pytest.fixture(scope="session")
def store_video(tmp_path_factory) -> Path:
    from training.datasets.synthetic.video import generate_video
    from training.datasets.synthetic.video_plan import VideoSceneConfig

    out = tmp_path_factory.mktemp("video") / "store-video-small"
    return generate_video(VideoSceneConfig.from_preset("store-video-small"), out)


@pytest.fixture(scope="session")
def truth(store_video) -> dict:
    return json.loads((store_video / "ground_truth.json").read_text())
