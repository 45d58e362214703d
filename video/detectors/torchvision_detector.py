"""A torchvision detector (Faster R-CNN, RetinaNet, SSDlite) from a weights file given by path.

Nothing is downloaded: the network is built without weights and the file's state dict is loaded
strictly (missing, unexpected or mis-shaped keys are an error). The architecture is given
(`--detector-arch`) or found by trying each known one against the file. Frames run as one batch
(on the GPU when there is one, in bf16 autocast there). Class `person_label` (1 in COCO) is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from video.detectors.base import Detections, clip_boxes, valid
from video.errors import VideoError

ARCHITECTURES = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "ssdlite320_mobilenet_v3_large",
)


def _state_dict(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise VideoError(f"detector weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise VideoError(f"detector weights {path}: not a readable torch file ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not state:
        raise VideoError(f"detector weights {path}: no state dict inside")
    return state


def build_network(arch: str, num_classes: int):
    from torchvision.models import detection

    if arch not in ARCHITECTURES:
        raise VideoError(f"unknown detector architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return getattr(detection, arch)(weights=None, weights_backbone=None, num_classes=num_classes)


class TorchvisionDetector:
    name = "torchvision"

    def __init__(
        self,
        weights: str | Path,
        arch: str | None = None,
        num_classes: int = 91,
        person_label: int = 1,
        score_threshold: float = 0.3,
        device: str | None = None,
        batch_size: int = 4,
    ) -> None:
        import torch

        path = Path(weights)
        state = _state_dict(path)
        candidates = [arch] if arch else list(ARCHITECTURES)
        problems = []
        for name in candidates:
            network = build_network(name, num_classes)
            result = network.load_state_dict(state, strict=False)
            shapes_ok = all(
                tuple(v.shape) == tuple(state[k].shape) for k, v in network.state_dict().items() if k in state
            )
            if not result.missing_keys and not result.unexpected_keys and shapes_ok:
                network.load_state_dict(state, strict=True)
                break
            problems.append(
                f"{name}: {len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected keys"
                + ("" if shapes_ok else ", mis-shaped tensors")
            )
        else:
            raise VideoError(f"detector weights {path} fit no torchvision detector ({'; '.join(problems)})")
        self.arch = name
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.network = network.eval().to(self.device)
        self.person_label = person_label
        self.score_threshold = score_threshold
        self.batch_size = batch_size if self.device.type == "cuda" else max(1, min(batch_size, 2))

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        import torch

        tensors = [
            torch.from_numpy(np.ascontiguousarray(f[:, :, ::-1])).permute(2, 0, 1).to(self.device).float()
            / 255.0
            for f in frames
        ]
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"),
        ):
            outputs = self.network(tensors)
        found = []
        for frame, out in zip(frames, outputs, strict=True):
            keep = (out["labels"] == self.person_label) & (out["scores"] >= self.score_threshold)
            boxes = out["boxes"][keep].float().cpu().numpy()
            scores = out["scores"][keep].float().cpu().numpy()
            found.append(valid(Detections(clip_boxes(boxes, frame.shape[1], frame.shape[0]), scores)))
        return found
