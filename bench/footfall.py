"""Footfall accuracy: unique-visitor count and pairwise precision / recall of re-ID grouping vs known identities.

    python -m reid synth --preset store --out data/store                       # ~10 s, once
    python -m bench.footfall --data data/store --weights CKPT [--record]       # a trained model
    python -m bench.footfall --data data/store --random-init --input-size 128 64   # smoke: untrained network
    python -m bench.footfall --data data/store --synthetic-vectors             # the algorithm alone

The test identities' sightings of the synthetic store (gallery + query folders: every crop of the 200
test people over one day, plus the single-image distractors, each its own visitor; junk crops are left
out) are embedded once (cached in an .npz next to the data, keyed by model and file list), then for
each threshold:

- online: `assign_visitor` over the sightings in capture order, as the service does at ingest;
- offline: `cluster_visitors` over the whole day, as `reid recluster` does.

Reported per threshold: predicted vs true unique visitors (count error %, target <= 5 %), pairwise
precision / recall, and seconds. `--synthetic-vectors` replaces the network by identity-centred
vectors (a unit centre per person + a per-camera bias + a direction shared by everyone + noise) to validate the grouping independently
of any model. A random-init network's numbers say nothing about a trained model's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from bench.report import append_section, command_line, machine_description
from service.footfall import assign_online, cluster_visitors
from training.grouping_metrics import count_error, pairwise_precision_recall

logger = logging.getLogger("bench.footfall")


def read_sightings(root: Path, limit: int | None):
    """Test-identity sightings of a `reid synth` folder, in capture order: (paths, truth labels, cameras, times)."""
    from training.datasets.synthetic.reader import read_synthetic

    dataset = read_synthetic(root)
    records = [r for r in (*dataset.gallery, *dataset.query) if r.pid >= 0]  # junk (-1) is not a person
    records.sort(key=lambda r: (r.captured_at, str(r.path)))
    if limit:
        step = max(1, len(records) // limit)  # a spread over the day, not its first hour
        records = records[::step][:limit]
    truth = np.array([r.pid if r.pid > 0 else -(i + 1) for i, r in enumerate(records)], dtype=np.int64)
    cameras = np.array([f"cam{r.camid}" for r in records], dtype=object)
    times = np.array([r.captured_at.timestamp() for r in records], dtype=np.float64)
    return [r.path for r in records], truth, cameras, times


def embed(paths: list[Path], args, cache: Path) -> tuple[np.ndarray, str]:
    import torch

    from model.embedder import Embedder

    torch.set_num_threads(args.threads)
    if args.weights:
        stat = Path(args.weights).stat()
        tag = f"weights={Path(args.weights).name}:{stat.st_size}:{int(stat.st_mtime)}"
    else:
        tag = f"random-init variant={args.variant} seed=0"
    tag += f" input={args.input_size[0]}x{args.input_size[1]} flip={args.flip}"
    key = hashlib.sha256((tag + "\n" + "\n".join(p.name for p in paths)).encode()).hexdigest()[:16]
    cache_file = cache / f"footfall-embeddings-{key}.npz"
    if cache_file.is_file():
        logger.info("embeddings from the cache %s", cache_file)
        return np.load(cache_file)["vectors"], tag
    if args.weights:
        embedder = Embedder.from_checkpoint(args.weights, device="cpu", flip=args.flip, batch_size=16)
    else:
        embedder = Embedder.random_init(
            args.variant, tuple(args.input_size), device="cpu", flip=args.flip, batch_size=16
        )
    start = time.perf_counter()
    chunks = []
    for i in range(0, len(paths), 64):
        chunks.append(embedder.embed(paths[i : i + 64]))
        logger.info("embedded %d / %d images", min(i + 64, len(paths)), len(paths))
    vectors = np.concatenate(chunks)
    elapsed = time.perf_counter() - start
    logger.info("embedded %d images in %.0f s (%.1f images/s)", len(paths), elapsed, len(paths) / elapsed)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache_file, vectors=vectors, tag=tag)
    return vectors, tag + f" (embedding took {elapsed:.0f} s, {len(paths) / elapsed:.1f} images/s)"


def synthetic_vectors(truth: np.ndarray, cameras: np.ndarray, args) -> tuple[np.ndarray, str]:
    """Identity-centred unit vectors: centre per identity + bias per camera + isotropic noise."""
    rng = np.random.default_rng(args.seed)
    dim = args.dim
    _, identity = np.unique(truth, return_inverse=True)
    _, camera = np.unique(cameras, return_inverse=True)
    centres = rng.standard_normal((identity.max() + 1, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bias = rng.standard_normal((camera.max() + 1, dim))
    bias *= args.camera_bias / np.linalg.norm(bias, axis=1, keepdims=True)
    common = rng.standard_normal(dim)
    common *= args.common / np.linalg.norm(common)
    noise = rng.standard_normal((len(truth), dim)) * (args.noise / np.sqrt(dim))
    x = centres[identity] + bias[camera] + common + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tag = f"synthetic vectors dim={dim} noise={args.noise} camera_bias={args.camera_bias} common={args.common} seed={args.seed}"
    return x.astype(np.float32), tag


def similarity_summary(vectors: np.ndarray, truth: np.ndarray) -> str:
    """Mean cosine similarity of same-identity vs different-identity pairs (on a sample)."""
    rng = np.random.default_rng(0)
    pick = rng.choice(len(truth), min(len(truth), 1500), replace=False)
    s = vectors[pick] @ vectors[pick].T
    same = truth[pick][:, None] == truth[pick][None, :]
    off = ~np.eye(len(pick), dtype=bool)
    return f"same-identity pairs {s[same & off].mean():.3f}, different-identity pairs {s[~same].mean():.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a `reid synth --preset store` folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="checkpoint to embed with")
    source.add_argument("--random-init", action="store_true", help="an untrained network (smoke run only)")
    source.add_argument("--synthetic-vectors", action="store_true", help="identity-centred vectors, no model")
    parser.add_argument("--variant", default="rgasc")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    parser.add_argument("--flip", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, help="at most this many sightings, spread over the day")
    parser.add_argument("--cache", type=Path, help="folder for cached embeddings (default: --data)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--horizon-s", type=float, default=4 * 3600)
    parser.add_argument("--link", choices=("max", "mean"), default="max", help="online visitor score")
    parser.add_argument("--dim", type=int, default=256, help="--synthetic-vectors: dimension")
    parser.add_argument("--noise", type=float, default=0.6, help="--synthetic-vectors: noise norm")
    parser.add_argument(
        "--camera-bias", type=float, default=0.3, help="--synthetic-vectors: camera bias norm"
    )
    parser.add_argument(
        "--common",
        type=float,
        default=0.0,
        help="--synthetic-vectors: norm of a direction shared by everyone",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    machine = machine_description()
    paths, truth, cameras, times = read_sightings(args.data, args.limit)
    if args.synthetic_vectors:
        vectors, source_tag = synthetic_vectors(truth, cameras, args)
    else:
        vectors, source_tag = embed(paths, args, args.cache or args.data)
    true_count = np.unique(truth).size
    lines = [
        f"Sightings: {len(truth)} ({true_count} true visitors: test identities + single-image distractors; "
        f"junk crops left out), {np.unique(cameras).size} cameras, "
        f"{(times.max() - times.min()) / 3600:.1f} h; horizon {args.horizon_s:.0f} s, online link {args.link}.",
        f"Vectors: {source_tag}; {similarity_summary(vectors, truth)}.",
        "",
        "| threshold | method | visitors (true) | count error | pairwise precision | pairwise recall | seconds |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for threshold in args.thresholds:
        for method in ("online", "offline"):
            start = time.perf_counter()
            if method == "online":
                labels = assign_online(vectors, times, threshold, args.horizon_s, link=args.link)
            else:
                labels = cluster_visitors(vectors, times, cameras, threshold, args.horizon_s)
            seconds = time.perf_counter() - start
            precision, recall = pairwise_precision_recall(labels, truth)
            error = count_error(labels, truth)
            lines.append(
                f"| {threshold:g} | {method} | {np.unique(labels).size} ({true_count}) | {100 * error:+.1f} % "
                f"| {precision:.3f} | {recall:.3f} | {seconds:.2f} |"
            )
    table = "\n".join(lines)
    print(table)
    if args.record:
        kind = (
            "synthetic vectors"
            if args.synthetic_vectors
            else ("random-init network" if args.random_init else "trained model")
        )
        section = (
            f"\n## Footfall grouping, synthetic store ({kind}) — {dt.date.today().isoformat()}\n\n"
            f"Machine: {machine}  \nCommand: `{command_line()}`  \n{table}\n"
        )
        append_section(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
