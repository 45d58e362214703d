"""Person detectors behind one small interface (`Detector.detect(frames) -> [Detections]`).

hog          OpenCV's HOG people detector: no weights, CPU (default)
motion       background subtraction (MOG2) + person-shaped blobs: fixed cameras, no weights, CPU
torchvision  Faster R-CNN / RetinaNet / SSDlite from a weights file (`--detector-weights`)
onnx         any ONNX person detector file (`--detector-weights`), ONNX Runtime
"""

from __future__ import annotations

from video.detectors.base import Detections, Detector
from video.errors import VideoError

DETECTORS = ("hog", "motion", "torchvision", "onnx")

# HOG's 64x128 window holds a person about 96 px tall: smaller people need the frame enlarged
HOG_PERSON_HEIGHT = 96.0


def build_detector(
    name: str,
    weights: str | None = None,
    *,
    arch: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    hog_upscale: float | None = None,
    min_person_height: float | None = None,
    fps: float = 10.0,
) -> Detector:
    """`min_person_height` (px): the smallest people to find. HOG enlarges frames so they fill its
    window (unless `hog_upscale` is given); the motion detector ignores smaller blobs."""
    if min_person_height is not None and not 8 <= min_person_height <= 4096:
        raise VideoError(f"--min-person-height must be 8..4096 px, got {min_person_height:g}")
    if hog_upscale is not None and not 0.25 <= hog_upscale <= 4:
        raise VideoError(f"--hog-upscale must be 0.25..4, got {hog_upscale:g}")
    if name == "hog":
        from video.detectors.hog import HogDetector

        if hog_upscale is None:
            hog_upscale = max(1.0, HOG_PERSON_HEIGHT / min_person_height) if min_person_height else 1.0
        return HogDetector(upscale=hog_upscale)
    if name == "motion":
        from video.detectors.motion import MotionDetector

        return MotionDetector(min_person_height=min_person_height or 48.0, fps=fps)
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
