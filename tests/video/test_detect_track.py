"""Detector and tracker on rendered video with known boxes."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import numpy as np
import pytest

from video.detectors import build_detector
from video.detectors.base import Detections
from video.errors import VideoError
from video.evaluation import TrackBox, iou_distance, read_truth_boxes, score_tracks
from video.sources import FileSource
from video.tracking import Tracker

START = datetime.fromisoformat("2024-06-03T10:00:00+00:00")


def test_iou_distance_hand_worked():
    d = iou_distance([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], max_distance=0.9)
    assert d[0, 0] == pytest.approx(0.0)
    assert d[0, 1] == pytest.approx(1 - 50 / 150)
    assert np.isnan(d[0, 2])


def test_tracker_on_true_boxes_gives_one_track_per_pass(store_video, truth):
    """Perfect detections: every pass is one track and nothing is invented (two people crossing
    may swap ids once: ByteTrack matches on box overlap only)."""
    for camera in truth["cameras"]:
        rows = read_truth_boxes(store_video, camera["camera_id"], min_visibility=0.2)
        by_frame = defaultdict(list)
        for row in rows:
            by_frame[row.frame].append(row.box)
        tracker = Tracker(fps=camera["fps"])
        predicted = []
        for frame in range(camera["num_frames"]):
            boxes = by_frame.get(frame, [])
            found = Detections(np.array(boxes).reshape(-1, 4), np.full(len(boxes), 0.9))
            predicted += [TrackBox(frame, tid, tuple(box)) for tid, box, _ in tracker.update(found)]
        scores = score_tracks(rows, predicted, range(camera["num_frames"]))
        assert scores["id_switches"] <= 1
        assert scores["predicted_tracks"] == scores["true_tracks"]
        assert scores["true_tracks"] == truth["truth"]["per_camera"][camera["camera_id"]]["passes"]
        assert scores["idf1"] > 0.9 and scores["precision"] > 0.99  # ByteTrack confirms on the 2nd frame


def test_hog_finds_the_walkers(store_video, truth):
    """HOG on rendered people at 5 fps: most detections are people, and people are found."""
    camera = truth["cameras"][0]
    detector = build_detector("hog")
    rows = read_truth_boxes(store_video, camera["camera_id"], min_visibility=0.9)
    by_frame = defaultdict(list)
    for row in rows:
        by_frame[row.frame].append(row.box)
    hits = total = true_positive = found = 0
    for frame in FileSource(store_video / camera["video"], START, fps=5):
        detections = detector.detect([frame.image])[0]
        assert detections.scores.min(initial=0.5) >= 0 and detections.scores.max(initial=0.5) <= 1
        boxes = by_frame.get(frame.index, [])
        d = iou_distance(boxes, detections.boxes, max_distance=0.6)
        hits += int(np.sum(~np.isnan(d).all(axis=1))) if d.size else 0
        total += len(boxes)
        true_positive += int(np.sum(~np.isnan(d).all(axis=0))) if d.size else 0
        found += len(detections)
    assert total > 20
    assert hits / total >= 0.3, f"recall {hits}/{total}"
    assert true_positive / max(found, 1) >= 0.8, f"precision {true_positive}/{found}"


def test_frames_smaller_than_the_hog_window_find_nobody_instead_of_crashing():
    """OpenCV's HOG crashes the whole process on frames lower or narrower than its 64x128 window (a tiny
    test stream, a thumbnail-sized video): run in a child process so a regression fails this test only."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import numpy as np\n"
        "from video.detectors import build_detector\n"
        "hog = build_detector('hog')\n"
        "sizes = [(64, 64), (96, 96), (64, 128), (32, 32), (127, 300), (300, 63)]\n"
        "print([len(hog.detect([np.zeros((h, w, 3), np.uint8)])[0]) for h, w in sizes])\n"
        "upscaled = build_detector('hog', hog_upscale=2.0)\n"
        "print(len(upscaled.detect([np.zeros((64, 64, 3), np.uint8)])[0]))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["[0, 0, 0, 0, 0, 0]", "0"]


def test_detector_files_are_named_when_missing(tmp_path):
    with pytest.raises(VideoError, match="needs --detector-weights"):
        build_detector("torchvision")
    with pytest.raises(VideoError, match=r"nothing\.pt: no such file"):
        build_detector("torchvision", str(tmp_path / "nothing.pt"))
    with pytest.raises(VideoError, match=r"nothing\.onnx: no such file"):
        build_detector("onnx", str(tmp_path / "nothing.onnx"))


def test_torchvision_detector_from_a_weights_file(tmp_path):
    """A state dict saved by path loads strictly, the architecture is found from the file, and it runs."""
    import torch

    from video.detectors.torchvision_detector import build_network

    torch.manual_seed(0)
    path = tmp_path / "ssdlite.pt"
    torch.save(build_network("ssdlite320_mobilenet_v3_large", num_classes=91).state_dict(), path)
    detector = build_detector("torchvision", str(path), device="cpu")
    assert detector.arch == "ssdlite320_mobilenet_v3_large"
    found = detector.detect([np.zeros((120, 160, 3), np.uint8)] * 2)
    assert len(found) == 2 and all(f.boxes.shape[1] == 4 for f in found)
    assert all((f.boxes[:, 2] <= 159).all() and (f.boxes[:, 3] <= 119).all() for f in found)
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(VideoError, match="fit no torchvision detector"):
        build_detector("torchvision", str(bad), arch="ssdlite320_mobilenet_v3_large", device="cpu")


def test_onnx_detector_reads_an_end_to_end_layout(tmp_path):
    """A tiny ONNX graph that answers fixed (N, 6) rows: the person rows come back scaled to the frame."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rows = np.array([[10, 20, 50, 100, 0.9, 1], [0, 0, 30, 30, 0.8, 3], [5, 5, 20, 40, 0.1, 1]], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["image"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["rows", "nothing"], ["detections"]),
        ],
        "fixed",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [3, 6])],
        [numpy_helper.from_array(rows, "rows"), numpy_helper.from_array(np.array(0, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "det.onnx"
    onnx.save(model, path)
    detector = build_detector("onnx", str(path))
    found = detector.detect([np.zeros((128, 192, 3), np.uint8)])[0]
    assert len(found) == 1  # other class and low score dropped
    assert found.boxes[0].tolist() == pytest.approx([30, 40, 150, 127])  # x * 3, y * 2, clipped to the frame


@pytest.mark.gpu
def test_torchvision_detector_batches_on_the_gpu(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from video.detectors.torchvision_detector import build_network

    path = tmp_path / "frcnn.pt"
    torch.save(build_network("fasterrcnn_mobilenet_v3_large_fpn", num_classes=91).state_dict(), path)
    detector = build_detector("torchvision", str(path), batch_size=8)
    assert detector.device.type == "cuda" and detector.batch_size == 8
    found = detector.detect([np.zeros((288, 384, 3), np.uint8)] * 8)
    assert len(found) == 8
