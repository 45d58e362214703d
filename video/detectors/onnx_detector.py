"""Any ONNX person detector file, run with ONNX Runtime (CUDA provider first when there is one).

Input: one image tensor, NCHW float32 RGB in [0, 1]; a fixed input size in the model is honoured by
resizing (boxes are scaled back), a dynamic one gets the frame as it is. Outputs, by shape:
- three outputs boxes (N, 4) xyxy, labels (N,), scores (N,) (torchvision's exported detectors;
  a leading batch axis of 1 is accepted), or
- one output (N, 6) or (1, N, 6): x0, y0, x1, y1, score, class (NMS already applied, the usual
  "end-to-end" export).
Raw anchor grids (e.g. YOLO heads before NMS) are not decoded here: export with NMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from video.detectors.base import Detections, clip_boxes, valid
from video.errors import VideoError


class OnnxDetector:
    name = "onnx"

    def __init__(
        self, model: str | Path, person_label: int = 1, score_threshold: float = 0.3, batch_size: int = 1
    ) -> None:
        path = Path(model)
        if not path.is_file():
            raise VideoError(f"ONNX detector {path}: no such file")
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - the "video" extra is missing
            raise VideoError("the onnx detector needs onnxruntime: pip install 'rga-reid[video]'") from exc
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
        ]
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise VideoError(f"ONNX detector {path}: cannot be loaded ({exc})") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise VideoError(f"ONNX detector {path}: expected one image input, found {len(inputs)}")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.batched = len(shape) == 4
        size = shape[-2:]
        self.fixed = tuple(size) if all(isinstance(s, int) and s > 0 for s in size) else None
        self.path = path
        self.person_label = person_label
        self.score_threshold = score_threshold
        self.batch_size = batch_size

    def _decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outputs = [np.asarray(o) for o in outputs]
        outputs = [
            o[0] if o.ndim >= 2 and o.shape[0] == 1 and o.ndim > (2 if o.shape[-1] == 4 else 1) else o
            for o in outputs
        ]
        if len(outputs) >= 3:
            boxes = next((o for o in outputs if o.ndim == 2 and o.shape[-1] == 4), None)
            flat = [o.reshape(-1) for o in outputs if o.ndim == 1]
            if boxes is not None and len(flat) >= 2:
                ints = [f for f in flat if np.issubdtype(f.dtype, np.integer)]
                floats = [f for f in flat if not np.issubdtype(f.dtype, np.integer)]
                labels = ints[0] if ints else flat[0]
                scores = floats[0] if floats else flat[1]
                return boxes, scores, labels
        if len(outputs) == 1 and outputs[0].ndim == 2 and outputs[0].shape[1] == 6:
            rows = outputs[0]
            return rows[:, :4], rows[:, 4], rows[:, 5]
        shapes = ", ".join(str(o.shape) for o in outputs)
        raise VideoError(
            f"ONNX detector {self.path}: outputs {shapes} are not a supported layout (see docs/video.md)"
        )

    def detect_one(self, frame: np.ndarray) -> Detections:
        import cv2

        height, width = frame.shape[:2]
        image = frame
        if self.fixed is not None:
            image = cv2.resize(frame, (self.fixed[1], self.fixed[0]), interpolation=cv2.INTER_LINEAR)
        tensor = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0
        if self.batched:
            tensor = tensor[None]
        boxes, scores, labels = self._decode(self.session.run(None, {self.input_name: tensor}))
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if self.fixed is not None:
            boxes = boxes * np.array([width / self.fixed[1], height / self.fixed[0]] * 2, np.float32)
        keep = (np.asarray(labels).astype(int) == self.person_label) & (
            np.asarray(scores) >= self.score_threshold
        )
        return valid(Detections(clip_boxes(boxes[keep], width, height), np.asarray(scores, np.float32)[keep]))

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        return [self.detect_one(f) for f in frames]
