"""`reid embed`: embed person images into an (N, D) float32 .npy plus a sidecar listing the files."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.batch_workers import batch_workers
from model.device import PRECISIONS
from model.errors import ReidError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}

NO_WEIGHTS_HELP = (
    "no --weights given. Embeddings from an untrained network are meaningless, so this refuses to run.\n"
    "Weights that work here: the model `make demo` trained (--weights data/demo/model.pt); "
    "a model you train (`reid synth --preset store --out data/synthetic` then "
    "`reid train --config synthetic --root data/synthetic`, which writes runs/synthetic/final.pt; "
    "for a real dataset `reid train --config market1501 --root data/market1501`); "
    "or a checkpoint written by the official RGA code (checkpoint_600.pth.tar). "
    "--random-init embeds with random weights (tests only)."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `reid embed`."""
    p = subparsers.add_parser("embed", help="embed person images into a .npy file", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIRS", help="image files and/or folders (recursive)")
    p.add_argument("--out", required=True, type=Path, help="output .npy (N x D float32); FILE.files.json lists inputs")
    p.add_argument(
        "--weights", type=Path, help="checkpoint (ours or the official RGA checkpoint_*.pth.tar) or our .onnx export"
    )
    p.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime"),
        default=os.environ.get("REID_RUNTIME") or None,
        help="torch, or onnxruntime (a checkpoint is exported to ONNX once and cached); default: $REID_RUNTIME, "
        "else by file (.onnx -> onnxruntime)",
    )
    p.add_argument("--random-init", action="store_true", help="random weights (tests and smoke runs only)")
    p.add_argument("--variant", default="rgasc", help="network variant for --random-init (default rgasc)")
    p.add_argument("--feature", choices=("feat_", "feat"), help="feature to embed with (default: the checkpoint's)")
    p.add_argument("--flip", action="store_true", help="horizontal-flip test-time augmentation")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    p.add_argument(
        "--precision",
        choices=(*PRECISIONS, "auto"),
        default=os.environ.get("REID_PRECISION") or "auto",
        help="torch runtime: fp32, bf16 (autocast; on a CPU with AMX, e.g. Xeon Sapphire Rapids, the fast "
        "choice: docs/onnx.md), or auto (bf16 on CUDA and on CPUs with native bf16, else fp32); default: "
        "$REID_PRECISION, else auto",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="torch on the CPU: batches embedded at once, each on its own core with one thread (default: one "
        "per usable CPU; 1 = one batch at a time on torch's own thread pool, as before). Other runtimes: 1",
    )
    p.set_defaults(func=run_embed)


def collect_images(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded recursively to their image files in sorted order."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ReidError(f"no image files under folder {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ReidError(f"no such file or folder: {path}")
    return files


def run_embed(args: argparse.Namespace) -> int:
    from model.embedder import Embedder  # torch is imported when the command runs, not for `reid --help`

    if args.batch_size < 1:
        raise ReidError("--batch-size must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise ReidError("--workers must be at least 1")
    if args.weights is None and not args.random_init:
        raise ReidError(NO_WEIGHTS_HELP)
    files = collect_images(args.inputs)
    kwargs = dict(
        device=args.device,
        batch_size=args.batch_size,
        flip=args.flip,
        feature=args.feature,
        precision=args.precision,
        runtime=args.runtime,
    )
    if args.weights is not None:
        embedder = Embedder.from_checkpoint(args.weights, **kwargs)
    else:
        embedder = Embedder.random_init(variant=args.variant, **kwargs)
    logger.info(
        "embedding %d images on %s (%s, %s) with %s",
        len(files),
        embedder.device_type,
        embedder.runtime,
        embedder.precision,
        embedder.feature,
    )
    vectors = np.empty((len(files), embedder.dim), dtype=np.float32)
    chunks = [files[start : start + args.batch_size] for start in range(0, len(files), args.batch_size)]
    workers = batch_workers(embedder, args.workers, len(chunks))
    with tqdm(total=len(files), unit="img", desc="embed", disable=None) as bar, workers as run:  # bar: a terminal only
        start = 0
        for chunk, block in zip(chunks, run(embedder.embed, chunks), strict=True):  # in input order
            vectors[start : start + len(chunk)] = block
            start += len(chunk)
            bar.update(len(chunk))
    out = args.out if args.out.suffix == ".npy" else args.out.with_suffix(".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vectors)
    sidecar = out.with_name(out.stem + ".files.json")
    sidecar.write_text(
        json.dumps(
            {
                "files": [str(f) for f in files],
                "feature": embedder.feature,
                "flip": embedder.flip,
                "weights": str(args.weights) if args.weights else "random-init",
                "runtime": embedder.runtime,
                "precision": embedder.precision,
                "fingerprint": embedder.fingerprint,
                "meta": embedder.meta.to_dict(),
            },
            indent=1,
        )
    )
    logger.info("wrote %s (%d x %d) and %s", out, *vectors.shape, sidecar)
    return 0
