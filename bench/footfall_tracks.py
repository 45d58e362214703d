"""Unique visitors over all cameras from the true tracks of `store-video` scenes: the re-ID model's part alone.

    python -m bench.footfall_tracks --weights CKPT [--seeds 0 1 2] [--thresholds 0.5 0.6 0.7] [--record]
    python -m bench.footfall_tracks --random-init                             # smoke: an untrained network

`bench.video --service` counts visitors over all cameras from what the detector and tracker made, so its
error mixes two things: tracks that are wrong (fragments, swaps) and links between tracks that are wrong
(the model). This bench takes the tracks from the ground truth (one track per pass of a person across a
camera) and measures the second alone: per track, up to --crops-per-track crops spread over the pass
(visible >= 60 %, >= 40 px tall, cut with the ingest's context padding from a box moved a little as a
detector's would be: training/datasets/synthetic/store_crops.py), embedded with the model, then grouped by
the service's offline rule (`reid recluster`, service.footfall.cluster_visitors: average linkage, a
track's crops are one visitor, two overlapping tracks of one camera never are) and by its online rule at
ingest (service/visitors.py: a track, sent whole when it ends, joins the visitor its crops match best on
average) at each threshold.

Frames are rendered with numpy alone (no video files, no OpenCV), so this also runs where the video stack
is not installed. Scenes are the `store-video` ones a `bench.video --seed N` run renders (same people, same
cameras); the `store-reid` training crops come from other scenes (seeds from STORE_SEED_BASE up).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from pathlib import Path

import numpy as np

from bench.report import append_json_line, append_section, command_line, machine_description
from service.footfall import assign_visitor, cluster_visitors, overlapping_visitors
from training.datasets.synthetic.store_crops import scene_samples
from training.datasets.synthetic.video_plan import VideoSceneConfig
from training.grouping_metrics import pairwise_precision_recall

logger = logging.getLogger("bench.footfall_tracks")


def true_track_crops(seed: int, crops_per_track: int, every: int = 5, preset: str = "store-video"):
    """Crops of the true tracks of `preset` scene `seed`: (pixels, identities, cameras, track refs,
    epoch seconds) over all cameras, and the number of true visitors."""
    scene = VideoSceneConfig.from_preset(preset, seed=seed)
    samples = scene_samples(
        scene,
        every=every,
        min_height=40.0,
        min_visibility=0.6,
        jitter=0.08,
        rng=np.random.default_rng([seed, 41]),
    )
    start = dt.datetime.fromisoformat(scene.start).timestamp()
    pixels, pids, cameras, tracks, times = [], [], [], [], []
    for (camera, track), taken in sorted(samples.items()):
        keep = np.linspace(0, len(taken) - 1, num=min(crops_per_track, len(taken))).round().astype(int)
        for i in sorted(set(keep.tolist())):
            frame, pid, crop = taken[i]
            pixels.append(crop)
            pids.append(pid)
            cameras.append(f"cam{camera + 1}")
            tracks.append(f"cam{camera + 1}/seed{seed}/{track}")
            times.append(start + frame / scene.fps)
    return (
        pixels,
        np.asarray(pids, np.int64),
        np.asarray(cameras, object),
        np.asarray(tracks, object),
        np.asarray(times, np.float64),
    )


def make_embedder(args):
    from model.embedder import Embedder

    if args.weights:
        return Embedder.from_checkpoint(
            args.weights, device=args.device, batch_size=32, precision=args.precision
        )
    return Embedder.random_init(
        args.variant, tuple(args.input_size), device=args.device, batch_size=32, precision=args.precision
    )


def online_by_track(vectors, times, cameras, tracks, threshold: float, horizon_s: float) -> np.ndarray:
    """The service's rule at ingest (service/visitors.py) as the video ingest feeds it: a track's crops are
    sent together when it ends, so tracks come in the order of their last crop, and each is decided once by
    all its crops: it joins the visitor whose score (per crop, its best-matching stored crop within the
    horizon of the track's first crop: max link; averaged over the track's crops) is the highest, if that
    reaches the threshold, never a visitor seen on an overlapping track of the same camera."""
    refs = list(dict.fromkeys(tracks.tolist()))
    members = {ref: np.flatnonzero(tracks == ref) for ref in refs}
    span = {ref: (times[members[ref]].min(), times[members[ref]].max()) for ref in refs}
    labels = np.full(len(times), -1, dtype=np.int64)
    for ref in sorted(refs, key=lambda r: (span[r][1], span[r][0], r)):
        mine = members[ref]
        done = np.flatnonzero(labels >= 0)
        others = {(int(labels[j]), *span[tracks[j]]) for j in done if cameras[j] == cameras[mine[0]]}
        match = assign_visitor(
            vectors[mine],
            span[ref][0],
            vectors[done],
            labels[done],
            times[done],
            threshold,
            horizon_s,
            exclude=overlapping_visitors(span[ref], others),
        )
        labels[mine] = int(mine[0]) if match is None else match
    return labels


def evaluate(vectors, pids, cameras, tracks, times, thresholds, horizon_s: float) -> list[dict]:
    """The visitor count and pairwise precision / recall at each threshold, by the offline grouping
    (`reid recluster`) and by the service's online rule at ingest."""
    rows = []
    true_visitors = int(np.unique(pids).size)
    for threshold in thresholds:
        for rule in ("recluster", "online"):
            if rule == "recluster":
                labels = cluster_visitors(vectors, times, cameras, threshold, horizon_s, tracks=tracks)
            else:
                labels = online_by_track(vectors, times, cameras, tracks, threshold, horizon_s)
            precision, recall = pairwise_precision_recall(labels, pids)
            counted = int(np.unique(labels).size)
            rows.append(
                {
                    "threshold": threshold,
                    "rule": rule,
                    "visitors": counted,
                    "true_visitors": true_visitors,
                    "tracks": int(np.unique(tracks).size),
                    "error": (counted - true_visitors) / true_visitors,
                    "precision": precision,
                    "recall": recall,
                }
            )
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="checkpoint (or ONNX file) to embed with")
    source.add_argument("--random-init", action="store_true", help="an untrained network (smoke run only)")
    parser.add_argument("--variant", default="rgasc")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="scene seeds")
    parser.add_argument("--scene", default="store-video", help="video preset (store-video-small: tests)")
    parser.add_argument("--crops-per-track", type=int, default=4)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--horizon-s", type=float, default=3600.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write the rows to this file (JSON lines)")
    args = parser.parse_args(argv)
    if args.crops_per_track < 1:
        parser.error("--crops-per-track must be >= 1")
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    embedder = make_embedder(args)
    lines = [
        "| seed | threshold | rule | tracks | visitors counted (true) | error | pairwise precision | pairwise recall |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    results = []
    for seed in args.seeds:
        started = time.perf_counter()
        pixels, pids, cameras, tracks, times = true_track_crops(seed, args.crops_per_track, preset=args.scene)
        rendered = time.perf_counter() - started
        vectors = np.concatenate([embedder.embed(pixels[i : i + 64]) for i in range(0, len(pixels), 64)])
        logger.info(
            "seed %d: %d crops of %d true tracks rendered in %.1f s, embedded in %.1f s",
            seed,
            len(pixels),
            np.unique(tracks).size,
            rendered,
            time.perf_counter() - started - rendered,
        )
        for row in evaluate(vectors, pids, cameras, tracks, times, args.thresholds, args.horizon_s):
            results.append({"seed": seed, **row})
            lines.append(
                f"| {seed} | {row['threshold']:g} | {row['rule']} | {row['tracks']} | {row['visitors']} "
                f"({row['true_visitors']}) "
                f"| {100 * row['error']:+.1f}% | {row['precision']:.3f} | {row['recall']:.3f} |"
            )
    table = "\n".join(lines)
    print(table)
    for row in results:
        append_json_line(args.json, {"scene": args.scene, "model": args.weights or "random-init", **row})
    if args.record:
        model = (
            f"weights `{Path(args.weights).name}`"
            if args.weights
            else "random-init network: not a re-ID result"
        )
        append_section(
            f"\n## Visitors over all cameras from the true tracks (bench/footfall_tracks.py) — "
            f"{dt.date.today().isoformat()}\n\nMachine: {machine_description(embedder.device)}  \nModel: {model}  \n"
            f"Command: `{command_line()}`\n\n{table}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
