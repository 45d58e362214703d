"""Person detectors behind one small interface (`Detector.detect(frames) -> [Detections]`).

hog          OpenCV's HOG people detector: no weights, CPU (default)
torchvision  Faster R-CNN / RetinaNet / SSDlite from a weights file (`--detector-weights`)
onnx         any ONNX person detector file (`--detector-weights`), ONNX Runtime
"""

from __future__ import annotations

from video.detectors.base import Detections, Detector
from video.errors import VideoError

DETECTORS = ("hog", "torchvision", "onnx")


def build_detector(
    name: str,
    weights: str | None = None,
    *,
    arch: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    hog_upscale: float = 1.0,
) -> Detector:
    if name == "hog":
        from video.detectors.hog import HogDetector

        return HogDetector(upscale=hog_upscale)
    if name in ("torchvision", "onnx") and not weights:
        raise VideoError(f"--detector {name} needs --detector-weights FILE (nothing is downloaded)")
    if name == "torchvision":
        from video.detectors.torchvision_detector import TorchvisionDetector

        return TorchvisionDetector(weights, arch=arch, device=device, batch_size=batch_size or 4)
    if name == "onnx":
        from video.detectors.onnx_detector import OnnxDetector

        return OnnxDetector(weights, batch_size=batch_size or 1)
    raise VideoError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


__all__ = ["DETECTORS", "Detections", "Detector", "build_detector"]
