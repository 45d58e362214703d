"""Benchmark: video ingest on the rendered store (`reid synth --preset store-video`).

    python -m bench.video [--preset store-video] [--data data/bench] [--fps 5] [--detector hog]
                          [--detector-weights FILE] [--cameras N] [--service] [--write]
                          [--save-detections DIR | --detections DIR]

Per camera: frames/s of decode + detect + track (wall clock, and per CPU-second: the machine is
shared), MOT scores against the ground truth (motmetrics: MOTA, IDF1, recall, identity switches,
fragmentations) and the unique-visitor count from tracking alone (one track = one visitor) next
to the true number of passes. With --service, the chosen crops are then sent to an in-process
service over loopback HTTP (random-weight embedder: only the delivery rate means something) and
crops/s delivered is measured, with the service's GET /metrics unique-visitor count over all
cameras. --write appends the table to BENCHMARKS.md with the machine and the command.

--save-detections DIR writes each camera's raw detector output (DIR/<scene>/<camera>.json, with the
video's content hash, the frame rate and the detector settings: video/detectors/saved.py);
--detections DIR runs the same bench on those instead of the detector (frames are still decoded for
colours and crops), so tracker settings are compared on the same boxes. A replay refuses, in one line,
saved detections of another video, frame rate or detector setting; tracker options may differ.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import append_section, command_line, machine_description


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_camera(
    root: Path, camera: dict, detector, fps: float | None, settings=None, saved: tuple | None = None
) -> tuple[dict, list]:
    """`saved`: (DIR, header, replay?) to write the detector's output to, or to replay it from,
    DIR/<scene>/<camera>.json (the header: what the saved detections must have been made with)."""
    from video.detectors.saved import Recorder, Replay
    from video.evaluation import TrackBox, count_error, read_truth_boxes, score_tracks
    from video.pipeline import PipelineStats, track_source
    from video.sources import FileSource

    start = datetime.fromisoformat(camera["start"])
    source = FileSource(root / camera["video"], start, fps)
    processed: list[int] = []
    if saved is not None:
        folder, header, replay = saved
        path = Path(folder) / root.name / f"{camera['camera_id']}.json"
        header = {
            **header,
            "camera_id": camera["camera_id"],
            "video": camera["video"],
            "source_key": source.key(),
        }
        detector = Replay(path, header) if replay else Recorder(detector)

    def frames():
        for frame in source:
            if isinstance(detector, Replay):
                detector.check(frame.index)
            processed.append(frame.index)
            yield frame

    stats = PipelineStats()
    wall, cpu = time.perf_counter(), _cpu()
    tracks = list(
        track_source(
            frames(),
            camera_id=camera["camera_id"],
            source_key=source.key(),
            detector=detector,
            fps=min(fps or source.native_fps, source.native_fps),
            tracker_settings=settings,
            stats=stats,
        )
    )
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    if isinstance(detector, Replay):
        detector.finish()
    elif isinstance(detector, Recorder):
        detector.save(path, header, processed)
    predicted = [TrackBox(f, t.track_id, b) for t in tracks for f, _, b, _ in t.boxes]
    scores = score_tracks(read_truth_boxes(root, camera["camera_id"]), predicted, processed)
    return {
        "camera": camera["camera_id"],
        "frames": stats.frames,
        "wall_s": wall,
        "frames_per_s": stats.frames / wall,
        "frames_per_cpu_s": stats.frames / max(cpu, 1e-9),
        "tracks": len(tracks),
        "stitched": stats.stitched,
        "dropped_short": stats.dropped_short,
        "dropped_still": stats.dropped_still,
        "dropped_parts": stats.dropped_parts,
        "dropped_small": stats.dropped_small,
        "cut": stats.cut,
        **scores,
        "count_error": None,
        "_count_error": count_error,
    }, tracks


def deliver(tracks: list, weights: str | None = None, visitor_threshold: float | None = None) -> dict:
    """Send every chosen crop to an in-process service; crops/s and the service's visitor count.

    ``weights``: a checkpoint or ONNX file to embed with (default: a random-weight RGA-SC, for which only the
    delivery rate means something); ``visitor_threshold``: the service's REID_VISITOR_THRESHOLD.
    """
    import socket
    import tempfile
    import threading

    import httpx
    import uvicorn

    from model.embedder import Embedder
    from service.app import create_app
    from service.settings import Settings
    from video.client import GalleryClient
    from video.ingest import uploads_of

    uploads = [u for t in tracks for u in uploads_of(t, 92)]
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        extra = {} if visitor_threshold is None else {"visitor_threshold": visitor_threshold}
        if weights:
            extra["weights"] = Path(weights)
        settings = Settings(
            _env_file=None, dev_mode=True, data_dir=Path(tmp), device="cpu", retention_days=0, **extra
        )
        if weights:
            embedder = Embedder.from_checkpoint(weights, device="cpu", batch_size=16)
        else:
            embedder = Embedder.random_init(variant="rgasc", device="cpu", batch_size=16)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, embedder=embedder), host="127.0.0.1", port=port, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        try:
            with GalleryClient(url, "dev-ingest-key", batch_size=16) as client:
                started = time.perf_counter()
                stats = client.send(uploads)
                seconds = time.perf_counter() - started
            times = sorted(u.captured_at for u in uploads)
            with httpx.Client(base_url=url, headers={"X-API-Key": "dev-admin-key"}, timeout=120) as http:
                answer = http.get(
                    "/metrics",
                    params={
                        "start": times[0].isoformat(),
                        "end": (times[-1] + timedelta(seconds=1)).isoformat(),
                        "bucket": "1d",
                    },
                )
                metrics = answer.json() if answer.status_code == 200 else {"error": answer.text[:200]}
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    return {
        "crops": len(uploads),
        "created": stats.created,
        "seconds": seconds,
        "crops_per_s": len(uploads) / seconds,
        "metrics": metrics,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="store-video")
    parser.add_argument("--data", default="data/bench", help="where the rendered videos are kept (reused)")
    parser.add_argument("--fps", type=float, default=5.0, help="frames/s processed (frame skipping)")
    parser.add_argument("--detector", default="hog")
    parser.add_argument("--detector-weights")
    parser.add_argument("--hog-upscale", type=float)
    parser.add_argument("--min-person-height", type=float)
    parser.add_argument("--min-track-seconds", type=float, default=0.0)
    parser.add_argument("--no-stitch", action="store_true")
    parser.add_argument(
        "--match-colour",
        type=float,
        default=0.0,
        help="colour gate in the frame-to-frame matching (video/appearance_matching.py; 0 = boxes only)",
    )
    parser.add_argument(
        "--match-colour-fuse", type=float, default=0.0, help="... and BoT-SORT's fusion under this"
    )
    parser.add_argument("--seed", type=int, default=0, help="scene seed (0 = the preset's)")
    parser.add_argument("--cameras", type=int, help="only the first N cameras")
    parser.add_argument("--service", action="store_true", help="also deliver the crops to a loopback service")
    parser.add_argument(
        "--weights", help="--service: checkpoint or ONNX file to embed with (default: random weights)"
    )
    parser.add_argument(
        "--visitor-threshold",
        type=float,
        nargs="+",
        help="--service: the service's visitor threshold (several: one delivery to a fresh service each)",
    )
    parser.add_argument("--write", action="store_true", help="append the results to BENCHMARKS.md")
    replay = parser.add_mutually_exclusive_group()
    replay.add_argument(
        "--save-detections", metavar="DIR", help="write each camera's raw detections under DIR"
    )
    replay.add_argument(
        "--detections",
        metavar="DIR",
        help="replay the detections saved under DIR instead of running the detector",
    )
    args = parser.parse_args(argv)
    if (args.weights or args.visitor_threshold is not None) and not args.service:
        parser.error("--weights and --visitor-threshold need --service")

    from training.datasets.synthetic.video import generate_video
    from training.datasets.synthetic.video_plan import VideoSceneConfig
    from video.detectors import build_detector
    from video.errors import VideoError

    machine = machine_description()
    from video.tracking import TrackerSettings

    name = args.preset if args.seed == 0 else f"{args.preset}-seed{args.seed}"
    root = generate_video(VideoSceneConfig.from_preset(args.preset, seed=args.seed), Path(args.data) / name)
    settings = TrackerSettings(
        min_seconds=args.min_track_seconds,
        stitch=not args.no_stitch,
        match_colour=args.match_colour,
        match_colour_fuse=args.match_colour_fuse,
    )
    truth = json.loads((root / "ground_truth.json").read_text())
    detector = None
    if not args.detections:  # a replay needs no detector (nor its weights)
        detector = build_detector(
            args.detector,
            args.detector_weights,
            hog_upscale=args.hog_upscale,
            min_person_height=args.min_person_height,
            fps=args.fps,
        )
    saved = None
    if args.save_detections or args.detections:
        header = {
            "preset": args.preset,
            "seed": args.seed,
            "fps": args.fps,
            "detector": {
                "name": args.detector,
                "weights": Path(args.detector_weights).name if args.detector_weights else None,
                "hog_upscale": args.hog_upscale,
                "min_person_height": args.min_person_height,
            },
        }
        saved = (args.save_detections or args.detections, header, bool(args.detections))
    cameras = truth["cameras"][: args.cameras] if args.cameras else truth["cameras"]
    rows, all_tracks = [], []
    for camera in cameras:
        try:
            row, tracks = run_camera(root, camera, detector, args.fps, settings, saved)
        except VideoError as exc:
            parser.exit(2, f"bench.video: error: {exc}\n")
        true_passes = truth["truth"]["per_camera"][camera["camera_id"]]["passes"]
        row["true_passes"] = true_passes
        row["count_error"] = row.pop("_count_error")(row["tracks"], true_passes)
        rows.append(row)
        all_tracks += tracks
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    deliveries = []
    if args.service:
        for threshold in args.visitor_threshold or [None]:
            deliveries.append((threshold, deliver(all_tracks, args.weights, threshold)))
            print(json.dumps({k: v for k, v in deliveries[-1][1].items() if k != "metrics"}))
    load_end = os.getloadavg()[0]

    lines = [
        f"\n## Video ingest on `{name}` ({datetime.now(UTC):%Y-%m-%d})\n",
        f"Machine: {machine}; load average {load_end:.1f} at the end. Command: `{command_line()}`.",
        f"Detector `{args.detector}`"
        + (" (replayed from saved detections: frames/s are decode + track only)" if args.detections else "")
        + f", {args.fps:g} frames/s processed of {cameras[0]['fps']:g}, "
        f"{cameras[0]['width']}x{cameras[0]['height']}.\n",
        "| camera | frames | frames/s (wall) | frames per CPU-s | MOTA | IDF1 | recall | ID switches "
        "| fragmentations | tracks | true passes | count error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['camera']} | {r['frames']} | {r['frames_per_s']:.2f} | {r['frames_per_cpu_s']:.2f} "
            f"| {r['mota']:.3f} | {r['idf1']:.3f} | {r['recall']:.3f} | {r['id_switches']} "
            f"| {r['fragmentations']} | {r['tracks']} | {r['true_passes']} | {100 * r['count_error']:+.1f}% |"
        )
    total_tracks = sum(r["tracks"] for r in rows)
    total_passes = sum(r["true_passes"] for r in rows)
    lines.append(
        f"\nAll cameras, tracking alone: {total_tracks} tracks for {total_passes} true passes "
        f"({100 * (total_tracks - total_passes) / total_passes:+.1f}%); {truth['truth']['visitors']} true visitors."
    )
    for threshold, delivered in deliveries:
        totals = delivered["metrics"].get("totals", {})
        true_visitors = truth["truth"]["visitors"]
        counted = totals.get("unique_visitors")
        model = f"embedder `{args.weights}`" if args.weights else "random-weight RGA-SC embedder"
        worth = (
            f"{100 * (counted - true_visitors) / true_visitors:+.1f}%"
            if args.weights and isinstance(counted, int)
            else "random weights: not a re-ID result"
        )
        lines.append(
            f"Delivered {delivered['crops']} crops to a loopback service ({model} on the CPU, same machine"
            f"{'' if threshold is None else f', visitor threshold {threshold:g}'}) in "
            f"{delivered['seconds']:.1f} s: {delivered['crops_per_s']:.1f} crops/s. "
            f"Service unique visitors over all cameras: {counted if counted is not None else 'n/a'} "
            f"(true: {true_visitors}; {worth})."
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        append_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
